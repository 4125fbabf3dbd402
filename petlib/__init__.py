"""petface-study library."""
