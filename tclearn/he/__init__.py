"""Variant C: CKKS (TenSEAL) encrypted models, a supervisor that holds the secret key, and its clients."""
