"""State estimation under partial observability: a GRU that tracks hidden internal variables."""
