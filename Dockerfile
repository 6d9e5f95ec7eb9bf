# The bot: slim Python image, non-root user. `docker compose up` runs it with PostgreSQL.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
COPY dialogs ./dialogs
COPY storage ./storage
COPY scheduler ./scheduler
RUN pip install .

RUN useradd --create-home --uid 10001 bot && mkdir -p /app/data && chown bot /app/data
USER bot
VOLUME ["/app/data"]
EXPOSE 8080

CMD ["python", "-m", "bot", "run"]
