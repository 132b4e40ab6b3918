"""The validator node daemon (`tclearn node run`)."""
