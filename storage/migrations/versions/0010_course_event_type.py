"""course_event_type: «Курсы повышения квалификации (ДПП)», whose feedback is Приложение 1

Revision ID: 0010
Revises: 0005
"""

from alembic import op
import sqlalchemy as sa


revision = "0010"
down_revision = "0005"
branch_labels = ("course_event_type",)
depends_on = None

CODE = "dpp_course"


def upgrade() -> None:
    event_types = sa.table(
        "event_types", sa.column("code", sa.String), sa.column("name", sa.String), sa.column("description", sa.Text),
        sa.column("default_audience", sa.String), sa.column("reminder_offsets", sa.JSON),
        sa.column("position", sa.Integer),
    )
    op.bulk_insert(event_types, [{
        "code": CODE, "name": "Курсы повышения квалификации (ДПП)",
        "description": "Обучение по дополнительной профессиональной программе; после него — анкета слушателя "
                       "(Приложение 1).",
        "default_audience": "both", "reminder_offsets": [7 * 24 * 60, 24 * 60, 120], "position": 95,
    }])


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM event_types WHERE code = :code").bindparams(code=CODE))
