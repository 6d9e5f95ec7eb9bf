"""Errors that services raise; the dialogs turn them into clear answers."""


class ServiceError(Exception):
    """Base class: the message is a code, not user text."""


class Forbidden(ServiceError):
    """The acting person may not do this (wrong role or another municipality)."""


class NotFound(ServiceError):
    """The thing acted on does not exist (any more)."""


class Conflict(ServiceError):
    """The action no longer fits the stored state (stale, full, already done)."""
