"""
The exceptions of RateThrottle: the original library's classes, raised where it raises them.
The ones the engine raises are defined in the extension (`ratethrottle._native`).
"""

from ._native import (
    ConfigurationError,
    InvalidRuleError,
    RateThrottleException,
    RuleNotFoundError,
    StorageError,
    StrategyNotFoundError,
)

__all__ = [
    "ConfigurationError",
    "InvalidIdentifierError",
    "InvalidRuleError",
    "RateLimitDegradedError",
    "RateLimitExceeded",
    "RateThrottleException",
    "RuleConfigurationError",
    "RuleNotFoundError",
    "StorageError",
    "StorageUnavailableError",
    "StrategyNotFoundError",
]


class RateLimitExceeded(RateThrottleException):
    """Raised when rate limit is exceeded"""

    def __init__(
        self,
        message: str,
        retry_after: int = 0,
        limit: int = 0,
        remaining: int = 0,
        reset_time: int = 0,
    ):
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit
        self.remaining = remaining
        self.reset_time = reset_time


class StorageUnavailableError(RateThrottleException):
    """Raised when storage backend is unavailable"""

    def __init__(self, message: str, retry_after: int = 0):
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitDegradedError(RateThrottleException):
    """Raised when operating in degraded/fallback mode"""

    def __init__(self, message: str, mode: str = "unknown"):
        super().__init__(message)
        self.mode = mode


class InvalidIdentifierError(RateThrottleException):
    """Raised when identifier is invalid or missing"""

    pass


class RuleConfigurationError(RateThrottleException):
    """Raised when rule configuration is invalid"""

    pass
