"""The model vault: content-addressed off-chain storage for model blobs whose sha256 is on chain.

`store` (BlobStore, fsspec), `http` (the same over the vault service, signed requests), `codec`
(deterministic safetensors), `cipher` + `envelope` (variant B chunked AES-GCM and key wraps), `keys`
(encrypted X25519 key files), `directory` (what the vault asks the chain), `access_log` (audit table).
See docs/vault.md. Import from those modules: this package imports none of them, so that reading the vault's
settings (`config`, for `tclearn vault --help`) does not load eth-utils.
"""
