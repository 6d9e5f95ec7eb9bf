"""events: event types (seeded with the catalogue), events, registrations, subscriptions, feedback

Revision ID: 0005
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0002"
branch_labels = ("events",)
depends_on = None

WEEK, DAY, TWO_HOURS = 7 * 24 * 60, 24 * 60, 120
OFFSETS = [WEEK, DAY, TWO_HOURS]

# The catalogue of domain-brief §3 (names as the programmes spell them).
EVENT_TYPES = [
    ("smart_holidays", "«Умные каникулы»",
     "Каникулярная школа для педагогов: сессии в школьные каникулы (в программах — дважды в учебный год), "
     "с участием молодых педагогов, руководителей и педагогов ДОУ.", "both"),
    ("method_train", "Методический поезд «Наставники – молодым»",
     "Акция, в которой наставники работают для молодых педагогов: профессиональное общение, обмен опытом, "
     "выступления победителей конкурса «Педагогический дебют».", "both"),
    ("young_teacher_school", "Школа молодого педагога",
     "Муниципальная школа молодого педагога: занятия для педагогов со стажем до 3 лет вместе с наставниками "
     "(в программах — 4 сессии в год).", "young_teachers"),
    ("young_specialist_day", "День молодого специалиста",
     "«От дебюта – к бенефису»: методическая помощь молодым специалистам и мотивация к профессиональному росту.",
     "young_teachers"),
    ("debut", "Конкурс «Педагогический дебют»",
     "Конкурс профессионального мастерства молодых педагогов.", "young_teachers"),
    ("duet", "Конкурс «Педагогический дуэт»",
     "Номинация для пары «наставник — молодой педагог».", "both"),
    ("club", "Клуб молодых педагогов",
     "Встречи сообщества молодых педагогов: общение, обмен опытом, поддержка.", "young_teachers"),
    ("field_seminar", "Выездной семинар",
     "Обучающее выездное мероприятие с участием наставников и молодых специалистов.", "both"),
    ("seminar", "Семинар / мастер-класс",
     "Семинар, семинар-практикум, мастер-класс, открытые уроки.", "both"),
]


def upgrade() -> None:
    event_types = op.create_table(
        "event_types",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("default_audience", sa.String(length=32), nullable=False),
        sa.Column("reminder_offsets", sa.JSON(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_types")),
        sa.UniqueConstraint("code", name=op.f("uq_event_types_code")),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("municipality_id", sa.Integer(), nullable=False),
        sa.Column("type_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("place", sa.String(length=300), nullable=True),
        sa.Column("online_url", sa.String(length=500), nullable=True),
        sa.Column("audience", sa.String(length=32), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("deficit_tags", sa.JSON(), nullable=False),
        sa.Column("organiser_contact", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source_uid", sa.String(length=300), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("followup_queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["members.id"], name=op.f("fk_events_created_by_members"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["municipality_id"], ["municipalities.id"],
                                name=op.f("fk_events_municipality_id_municipalities")),
        sa.ForeignKeyConstraint(["type_id"], ["event_types.id"], name=op.f("fk_events_type_id_event_types")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("municipality_id", "source_uid", name=op.f("uq_events_municipality_id")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_ends_at"), ["ends_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_municipality_id"), ["municipality_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_starts_at"), ["starts_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_type_id"), ["type_id"], unique=False)

    op.create_table(
        "event_registrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("seat_round", sa.Integer(), nullable=False),
        sa.Column("attended", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_event_registrations_event_id_events"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"],
                                name=op.f("fk_event_registrations_member_id_members"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_registrations")),
        sa.UniqueConstraint("event_id", "member_id", name=op.f("uq_event_registrations_event_id")),
    )
    with op.batch_alter_table("event_registrations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_registrations_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_event_registrations_member_id"), ["member_id"], unique=False)

    op.create_table(
        "event_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("type_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"],
                                name=op.f("fk_event_subscriptions_member_id_members"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["type_id"], ["event_types.id"],
                                name=op.f("fk_event_subscriptions_type_id_event_types"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_subscriptions")),
        sa.UniqueConstraint("member_id", "type_id", name=op.f("uq_event_subscriptions_member_id")),
    )
    with op.batch_alter_table("event_subscriptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_subscriptions_member_id"), ["member_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_event_subscriptions_type_id"), ["type_id"], unique=False)

    op.create_table(
        "event_feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("deficit_groups", sa.JSON(), nullable=False),
        sa.Column("deficit_still_strong", sa.String(length=16), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_event_feedback_event_id_events"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_event_feedback_member_id_members"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_feedback")),
        sa.UniqueConstraint("event_id", "member_id", name=op.f("uq_event_feedback_event_id")),
    )
    with op.batch_alter_table("event_feedback", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_feedback_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_event_feedback_member_id"), ["member_id"], unique=False)

    op.bulk_insert(
        event_types,
        [
            {"code": code, "name": name, "description": description, "default_audience": audience,
             "reminder_offsets": OFFSETS, "position": (index + 1) * 10}
            for index, (code, name, description, audience) in enumerate(EVENT_TYPES)
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table("event_feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_feedback_member_id"))
        batch_op.drop_index(batch_op.f("ix_event_feedback_event_id"))
    op.drop_table("event_feedback")
    with op.batch_alter_table("event_subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_subscriptions_type_id"))
        batch_op.drop_index(batch_op.f("ix_event_subscriptions_member_id"))
    op.drop_table("event_subscriptions")
    with op.batch_alter_table("event_registrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_registrations_member_id"))
        batch_op.drop_index(batch_op.f("ix_event_registrations_event_id"))
    op.drop_table("event_registrations")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_type_id"))
        batch_op.drop_index(batch_op.f("ix_events_status"))
        batch_op.drop_index(batch_op.f("ix_events_starts_at"))
        batch_op.drop_index(batch_op.f("ix_events_municipality_id"))
        batch_op.drop_index(batch_op.f("ix_events_ends_at"))
    op.drop_table("events")
    op.drop_table("event_types")
