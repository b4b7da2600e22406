"""The edgeship update server: device registry, release distribution, events, metrics.

The app is built by ``edgeship.server.app.create_app`` from ``edgeship.server.settings.ServerSettings``;
this package imports nothing itself, so reading the settings (``edgeship server --help``) does not
load FastAPI, SQLAlchemy and TUF.
"""
