//! Integration tests of ratethrottle-config.
