"""Configuration: YAML -> validated, immutable objects (see conf.model), or FILE:LINE errors.

    from conf import load_config, ConfigError
    config = load_config(path)          # None: the embedded conf/default.yaml
"""

from .errors import ConfigError
from .fallback import control_only_config
from .loader import DEFAULT_CONFIG_NAME, DEFAULT_CONFIG_PATH, load_config
from .model import (
    BALANCER_METHODS,
    LOG_FORMATS,
    LOG_LEVELS,
    MEMBER_STATUSES,
    MPM,
    UPGRADE_ANY,
    UPGRADE_NONE,
    Admin,
    Backend,
    BackendTLS,
    Balancer,
    CertFiles,
    Config,
    Control,
    Discover,
    HeaderCondition,
    Limits,
    Listener,
    ListenerTLS,
    Log,
    Member,
    PerClient,
    RequestRate,
    Route,
    Target,
    Timeouts,
    TLSSettings,
)

__all__ = [
    "BALANCER_METHODS", "DEFAULT_CONFIG_NAME", "DEFAULT_CONFIG_PATH", "LOG_FORMATS", "LOG_LEVELS",
    "MEMBER_STATUSES", "MPM", "UPGRADE_ANY", "UPGRADE_NONE", "Admin", "Backend", "BackendTLS", "Balancer", "CertFiles",
    "Config", "ConfigError", "control_only_config", "Control", "Discover", "HeaderCondition", "Limits", "Listener", "ListenerTLS", "Log", "Member",
    "PerClient", "RequestRate", "Route", "Target", "Timeouts", "TLSSettings", "load_config",
]
