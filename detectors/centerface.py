"""centerface detector backend (being written; see docs/ARCHITECTURE.md)."""
