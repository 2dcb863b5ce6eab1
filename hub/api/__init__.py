"""Connexion operation handlers: thin, one module per resource. They turn the request into
service calls and the results into JSON; every rule lives in the domain packages."""
