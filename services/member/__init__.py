"""The member service (`tclearn member serve`)."""
