"""The model vault service (`tclearn vault serve`)."""
