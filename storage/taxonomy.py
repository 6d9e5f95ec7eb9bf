"""Codes of the domain's reference lists (deficit groups, difficulties, help directions, ...).

Codes are stable public names stored in the database; the Russian labels live in
`dialogs/texts.py`. The lists follow the source programmes (see the project README).
"""

from __future__ import annotations

from enum import StrEnum


class DeficitGroup(StrEnum):
    """Competence groups in which a teacher may feel a deficit."""

    SUBJECT = "subject"              # предметные
    METHODICAL = "methodical"        # методические
    PSYCHOLOGICAL = "psychological"  # психолого-педагогические
    COMMUNICATIVE = "communicative"  # коммуникативные
    ICT = "ict"                      # ИКТ
    SELFORG = "selforg"              # самоорганизация


class Difficulty(StrEnum):
    """Difficulties met at work (Приложение 3, Q12)."""

    DISCIPLINE = "discipline"
    MOTIVATION = "motivation"
    STUDENT_RELATIONS = "student_relations"
    COLLEAGUE_RELATIONS = "colleague_relations"
    TIME = "time"
    EXTRACURRICULAR = "extracurricular"


class HelpDirection(StrEnum):
    """Directions of methodical help (Приложение 2, Q1)."""

    SUBJECT_METHODS = "subject_methods"
    CURRICULUM = "curriculum"
    LESSONS = "lessons"
    ASSESSMENT = "assessment"
    GIA = "gia"
    PROJECTS = "projects"
    UPBRINGING = "upbringing"
    PARENTS = "parents"
    UUD = "uud"
    SPECIAL_NEEDS = "special_needs"
    IT = "it"


class OrgKind(StrEnum):
    """Kinds of organisations teachers work in."""

    SCHOOL = "school"          # общеобразовательная организация
    PRESCHOOL = "preschool"    # ДОУ
    ADDITIONAL = "additional"  # дополнительное образование


class SubjectArea(StrEnum):
    """Subject areas (Приложение 2, Q13), plus preschool for kindergartens."""

    PHILOLOGY = "philology"
    SOCIAL = "social"
    MATH_IT = "math_it"
    SCIENCE = "science"
    ARTS = "arts"
    PE = "pe"
    OBZH = "obzh"
    PRIMARY = "primary"
    PRESCHOOL = "preschool"
    ADDITIONAL = "additional"
    OTHER = "other"
