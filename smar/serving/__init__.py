"""`smar serve`: the registry's champion over HTTP, following its alias."""
