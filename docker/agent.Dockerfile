# edgeship device agent (+ runtime). Build from the repository root:
#   docker build -f docker/agent.Dockerfile -t edgeship-agent .
# On a real device, prefer the systemd unit in deploy/systemd/; this image is for labs,
# CI fleets and containerised edge boxes.
FROM python:3.11-slim
RUN useradd --system --create-home --home-dir /home/edgeship edgeship
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir '.[runtime]' && rm -rf /src
USER edgeship
VOLUME ["/var/lib/edgeship"]
ENTRYPOINT ["edgeship", "agent", "run", "--data-dir", "/var/lib/edgeship"]
