# The quietpager worker (and `quietpager sink`, the webhook stand-in), as docker-compose.yml runs it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package needs, so a change to tests or configs does not rebuild the install layer.
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY detectors ./detectors
RUN pip install . && rm -rf /src

# Run unprivileged; the config is mounted read-only at /etc/quietpager/config.yaml.
RUN useradd --system --uid 10001 --no-create-home quietpager
USER quietpager
WORKDIR /home/quietpager

EXPOSE 9108
CMD ["quietpager", "run", "--config", "/etc/quietpager/config.yaml"]
