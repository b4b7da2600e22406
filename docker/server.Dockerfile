# edgeship update server. Build from the repository root:
#   docker build -f docker/server.Dockerfile -t edgeship-server .
# The data dir (/data) is prepared once by the operator with `edgeship server init`
# (it copies the signed metadata and the online snapshot/timestamp keys, never root/targets).
FROM python:3.11-slim
RUN useradd --system --create-home --home-dir /home/edgeship edgeship
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir '.[server]' && rm -rf /src
USER edgeship
VOLUME ["/data"]
EXPOSE 8443
ENV EDGESHIP_DATA_DIR=/data
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,ssl;urllib.request.urlopen('http://127.0.0.1:8443/healthz')" || exit 1
ENTRYPOINT ["edgeship", "server"]
CMD ["--host", "0.0.0.0", "--port", "8443"]
