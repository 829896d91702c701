"""CBF coupler: joint collision avoidance over the individual shields (docs/coupler.md)."""
