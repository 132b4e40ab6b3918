"""Local persistent state (SQLAlchemy 2): event cursors, access logs. SQLite by default, any URL works."""

from tclearn.state.db import Base, Database

__all__ = ["Base", "Database"]
