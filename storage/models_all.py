"""Every model module, imported so that `Base.metadata` knows all tables (Alembic, tests)."""

from storage.models import Base  # noqa: F401
from storage.models_outbox import OutboxMessage  # noqa: F401
from storage.models_mentoring import MentorPair  # noqa: F401
from storage.models_events import Event, EventFeedback, EventType, Registration, Subscription  # noqa: F401
from storage.models_surveys import AnonymousAnswer, DeficitItem, DeficitReport, QuestionnaireVersion, SurveyAnswer, SurveyCampaign, SurveyMark, SurveyResponse  # noqa: F401
from storage.models_linking import LinkAttempt, LinkCode  # noqa: F401
from storage.models_digest import DigestDelivery, DigestTarget  # noqa: F401
