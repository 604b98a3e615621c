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
# /src is gone: later steps run from / (a RUN cannot start in a deleted working directory).
WORKDIR /

# Run unprivileged; the config is mounted read-only at /etc/quietpager/config.yaml.
RUN useradd --system --uid 10001 --no-create-home quietpager
# The detect model's compiled kernel (Numba), built into the image and cached where the
# unprivileged user can read and refresh it, so a worker starts without compiling.
ENV NUMBA_CACHE_DIR=/var/cache/quietpager/numba
RUN mkdir -p "$NUMBA_CACHE_DIR" \
    && python -c "from detectors.compiled import warm_up; warm_up()" \
    && chown -R quietpager "$NUMBA_CACHE_DIR"
USER quietpager
WORKDIR /home/quietpager

EXPOSE 9108
CMD ["quietpager", "run", "--config", "/etc/quietpager/config.yaml"]
