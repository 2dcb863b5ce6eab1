"""Example partner brand sites: small relying-party Flask apps of the hub's OpenID provider,
one shared package parameterised by a brand file (brands/<code>.json). `make run` starts two
(`hub up`): log in on one, open the other, already signed in. See README.md here."""
