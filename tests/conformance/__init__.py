"""The cross-language conformance suite: one driver, one set of vectors, every SDK's conformance worker."""
