"""Deployable services: thin HTTP layers over the tclearn library."""
