"""Issues: numbering, assembly from tagged articles, lifecycle."""
