# syntax=docker/dockerfile:1
# Three images from one file:
#   docker build --target portal  -t model-portal .   (web, worker and beat)
#   docker build --target serving -t model-serving .  (the container Cloud Run, Kubernetes and the local runtime run)
#   docker build --target serving-onnx -t model-serving-onnx .  (the same server with only what an
#       ONNX form needs: no scikit-learn, SciPy, pandas, XGBoost or LightGBM; GCP_SERVING_IMAGE_ONNX)
# Build for linux/amd64 when the image goes to Cloud Run.

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --create-home app
WORKDIR /app

FROM base AS serving-onnx-deps
COPY serving/requirements-onnx.txt serving/requirements-onnx.txt
RUN pip install -r serving/requirements-onnx.txt

FROM serving-onnx-deps AS serving-deps
# LightGBM's wheel links the GNU OpenMP runtime, which the slim image lacks.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
COPY serving/requirements.txt serving/requirements.txt
RUN pip install -r serving/requirements.txt

# The two serving images differ only in the stage they start from.
FROM serving-onnx-deps AS serving-onnx
COPY --chown=app:app serving/ serving/
USER 10001:10001
ENV PORT=8080
EXPOSE 8080
# Cloud Run sends SIGTERM and waits 10 s; serving drains in-flight requests within 9 s.
CMD ["python", "-m", "serving"]

FROM serving-deps AS serving
COPY --chown=app:app serving/ serving/
USER 10001:10001
ENV PORT=8080
EXPOSE 8080
CMD ["python", "-m", "serving"]

FROM serving-deps AS portal
COPY requirements.txt requirements.txt
RUN pip install -r requirements.txt
COPY --chown=app:app . .
# The build's settings generate throwaway secrets into /tmp/build: removed in the same layer, so no
# secret is ever part of the image. The running container takes its own from the environment.
RUN DJANGO_SETTINGS_MODULE=portal.settings VAR_DIR=/tmp/build python manage.py collectstatic --noinput \
    && rm -rf /tmp/build \
    && mkdir -p /app/var && chown app:app /app/var
USER 10001:10001
# PRODUCTION=true: the container refuses to start without SECRET_KEY and KEY_SEALING_KEY.
ENV PORT=8000 \
    STATIC_ROOT=/app/var/static \
    PRODUCTION=true
EXPOSE 8000
CMD ["sh", "-c", "exec gunicorn portal.wsgi:application --bind 0.0.0.0:${PORT} --workers ${WEB_WORKERS:-2} --threads 4 --access-logfile -"]
