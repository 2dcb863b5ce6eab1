"""Coalition loyalty hub."""
