"""A minimal provider and HTTP simulator that drive the core's engine tests."""
