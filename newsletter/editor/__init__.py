"""The editors' workspace (login required on every route)."""
