"""Resource allocator: station shares for the bodies of multi-agent GridLife (docs/allocator.md)."""
