"""The in-memory ledger: Coalition.sol's rules in plain Python, for unit tests of the duties and simulations.

`InMemoryLedger.deploy(MemoryChain(), deployer, variant=..., genesis_hash=..., genesis_uri=..., parameters=...,
founders=[Admit(...), ...])` (the arguments of `LedgerClient.deploy`) implements
`tclearn.ledger.ledger.Ledger`; tests/ledger/test_ledger_backends.py keeps it faithful to the contract.
"""

from tclearn.ledger.memory.blocks import MEMORY_CHAIN_ID, MemoryChain
from tclearn.ledger.memory.ledger import InMemoryLedger

__all__ = ["MEMORY_CHAIN_ID", "InMemoryLedger", "MemoryChain"]
