"""retinaface detector backend (being written; see docs/ARCHITECTURE.md)."""
