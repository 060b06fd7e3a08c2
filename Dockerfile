FROM node:20-bookworm-slim AS assets
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 SCRM_ENV=production
WORKDIR /app
COPY pyproject.toml ./
COPY . .
COPY --from=assets /app/node_modules ./node_modules
RUN pip install . \
 && python -m babel.messages.frontend compile -d locale -D django \
 && DJANGO_SECRET_KEY=build-only SCRM_FIELD_KEYS=build-only SCRM_BLIND_INDEX_KEY=build-only \
    DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput -v0 \
 && rm -rf node_modules \
 && useradd --create-home scrm
USER scrm
EXPOSE 8000
CMD ["uvicorn", "scrm.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "4", "--proxy-headers"]
