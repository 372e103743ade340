# chatapp: gunicorn with one gevent-websocket worker, as a non-root user.
#
#   docker build -t chatapp .
#   docker run -p 5000:5000 -v chatapp-instance:/home/chatapp/instance chatapp
#
# BASE_IMAGE is any Debian-based image with python3 (3.11+) and its venv
# module: python:3.12-slim, or an image built from Debian packages where
# Docker Hub is out of reach (`--build-arg BASE_IMAGE=localbase:bookworm`).
# Plain `docker build` (the legacy builder) is enough: no BuildKit features.
ARG BASE_IMAGE=python:3.12-slim

# --- build: a venv with the dependencies, and the socket.io browser client ---
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src

# The socket.io client at the version package-lock.json pins, checked against
# the lockfile's sha512 integrity hash (what `npm ci` checks), without
# installing npm: only dist/socket.io.min.js of the one package is served.
ARG NPM_REGISTRY=https://registry.npmjs.org
COPY package-lock.json ./
RUN python3 -c "import base64, hashlib, io, json, sys, tarfile, urllib.request; \
name = 'socket.io-client'; \
entry = json.load(open('package-lock.json'))['packages']['node_modules/' + name]; \
url = '%s/%s/-/%s-%s.tgz' % (sys.argv[1].rstrip('/'), name, name, entry['version']); \
data = urllib.request.urlopen(url, timeout=60).read(); \
algo, _, expected = entry['integrity'].partition('-'); \
actual = base64.b64encode(hashlib.new(algo, data).digest()).decode(); \
algo == 'sha512' and actual == expected or sys.exit('%s: integrity mismatch' % url); \
tgz = tarfile.open(fileobj=io.BytesIO(data)); \
open('socket.io.min.js', 'wb').write(tgz.extractfile('package/dist/socket.io.min.js').read()); \
print(url, entry['integrity'][:20] + '... ok')" "$NPM_REGISTRY"

# Dependencies first, from pyproject.toml alone, at the versions the tests
# passed with (constraints.txt), so that code changes reuse this layer;
# gunicorn comes from the project's `production` extra. Nothing needs pip or
# setuptools at run time: they stay out of the final venv.
COPY pyproject.toml constraints.txt ./
RUN python3 -m venv /opt/venv \
 && python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['production']))" \
    > requirements.txt \
 && /opt/venv/bin/pip install --quiet -c constraints.txt -r requirements.txt \
 && /opt/venv/bin/pip uninstall --quiet -y setuptools pip

# --- the image that runs ---
FROM ${BASE_IMAGE}
ARG UID=10001
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CHATAPP_HOST=0.0.0.0 \
    CHATAPP_INSTANCE_PATH=/home/chatapp/instance
# CHATAPP_PORT is left unset so that a platform's PORT applies; default 5000.

RUN groupadd --system --gid "$UID" chatapp \
 && useradd --system --uid "$UID" --gid chatapp --home-dir /home/chatapp \
        --create-home --shell /usr/sbin/nologin chatapp \
 && mkdir -p /home/chatapp/instance \
 && chown chatapp:chatapp /home/chatapp/instance \
 && chmod 0700 /home/chatapp/instance

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Code stays root-owned and read-only to the app's user.
COPY config.py wsgi.py gunicorn.conf.py ./
COPY chatapp ./chatapp
COPY --from=build /src/socket.io.min.js ./chatapp/static/vendor/socket.io.min.js
RUN chmod -R a+rX,go-w /app && python3 -m compileall -q /app

# The generated SECRET_KEY (unless CHATAPP_SECRET_KEY is set) and the
# instance config.py live here; a new named volume inherits the ownership.
VOLUME ["/home/chatapp/instance"]
USER chatapp
EXPOSE 5000

# /healthz answers 200 {"status": "ok"}, or 503 when the store is unreachable.
# Python's urllib, as slim images have no curl; the address as gunicorn.conf.py
# binds it. The first check runs one interval after start, hence 10 s.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; e = os.environ.get; h = e('CHATAPP_HOST') or '127.0.0.1'; h = '127.0.0.1' if h in ('0.0.0.0', '::') else h; h = '[%s]' % h if ':' in h else h; urllib.request.urlopen('http://%s:%s/healthz' % (h, e('CHATAPP_PORT') or e('PORT') or 5000), timeout=4)"]

# gunicorn.conf.py: one gevent-websocket worker (-w 1, never --preload), no
# control socket, bound to $CHATAPP_HOST:$CHATAPP_PORT (or $PORT, or 5000).
CMD ["gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"]
