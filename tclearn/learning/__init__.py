"""The learning core on MONAI: coalition data, model zoo, local increments, validation, aggregation,
attacks for simulation, and prediction. Knows nothing of the ledger or the vault."""
