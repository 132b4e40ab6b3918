"""Coalition duties: the rules members, generals and validators follow in a round."""
