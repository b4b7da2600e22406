"""``/ui`` routes: parse the request, call ``views``, render a template.

Every page is behind a session (``session.py``); without one the browser is sent to the
login form. Every POST carries a CSRF token. A page asked for with ``?partial=1`` returns
only its live region, which ``static/live.js`` polls to refresh the page in place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from edgeship.cli.output import human_size
from edgeship.errors import EdgeshipError
from edgeship.server.context import ServerContext, context
from edgeship.server.problems import Unauthorized, status_of
from edgeship.server.ui import views
from edgeship.server.ui.session import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    SESSION_TTL_S,
    Signer,
    load_key,
    new_login_nonce,
)

POLL_MS = 3000  # how often a page refreshes its live region
# No inline script or style anywhere, so the policy can forbid both: an injected string
# that slips past escaping still cannot run.
_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

router = APIRouter(prefix="/ui", include_in_schema=False)


@dataclass(frozen=True)
class Dashboard:
    signer: Signer
    templates: Environment


class LoginRequired(Exception):
    """No valid session: the handler sends the browser to the login form."""

    def __init__(self, path: str) -> None:
        self.path = path


class CsrfRejected(Exception):
    """A POST without the CSRF token of the session (or login form) it claims to come from."""


@dataclass(frozen=True)
class Operator:
    name: str
    cookie: str
    csrf: str


def mount(app: FastAPI) -> None:
    """Serve the dashboard from ``app``; its signing key lives in the app's data dir."""
    ctx: ServerContext = app.state.ctx
    env = Environment(loader=PackageLoader("edgeship.server.ui", "templates"), autoescape=select_autoescape(default=True))
    env.filters["size"] = human_size
    env.filters["ago"] = _ago
    env.filters["pct"] = lambda x: f"{x * 100:.0f}%"
    app.state.ui = Dashboard(Signer(load_key(ctx.settings.data_dir)), env)
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(packages=[("edgeship.server.ui", "static")]), name="ui-static")
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(CsrfRejected, _csrf_rejected)


def _ago(when: datetime | None) -> str:
    if when is None:
        return "never"
    s = int((datetime.now(timezone.utc) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(s) >= size:
            return f"{s // size}{unit} ago"
    return f"{max(s, 0)}s ago"


async def dashboard(request: Request) -> Dashboard:
    return request.app.state.ui


def operator(request: Request, ui: Dashboard = Depends(dashboard), ctx: ServerContext = Depends(context)) -> Operator:
    cookie = request.cookies.get(SESSION_COOKIE)
    with ctx.db.read() as session:
        admin = ui.signer.admin_of(session, cookie, time.time())
    if admin is None or cookie is None:
        raise LoginRequired(request.url.path)
    return Operator(admin.name or admin.id, cookie, ui.signer.csrf(cookie))


async def checked_form(request: Request, op: Operator = Depends(operator), ui: Dashboard = Depends(dashboard)) -> Operator:
    """The operator of a POST whose form carries this session's CSRF token."""
    form = await request.form()  # cached by Starlette: the handler's Form() fields read it again
    if not ui.signer.csrf_ok(op.cookie, _field(form.get("csrf"))):
        raise CsrfRejected()
    return op


def _field(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _html(ui: Dashboard, template: str, status: int = 200, **data: Any) -> HTMLResponse:
    return HTMLResponse(ui.templates.get_template(template).render(poll_ms=POLL_MS, **data), status_code=status, headers=_HEADERS)


def _page(request: Request, ui: Dashboard, op: Operator, name: str, status: int = 200, **data: Any) -> HTMLResponse:
    """The page, or with ``?partial=1`` only its live region (``_<name>.html``)."""
    partial = request.query_params.get("partial") == "1"
    return _html(ui, f"_{name}.html" if partial else f"{name}.html", status, op=op, page=name, path=request.url.path, **data)


def _error(ui: Dashboard, op: Operator, exc: EdgeshipError) -> HTMLResponse:
    status, _code = status_of(exc)
    return _html(ui, "error.html", status, op=op, page="", message=exc.message, hint=exc.hint)


async def _to_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(f"/ui/login?next={quote(exc.path)}", status_code=303, headers=_HEADERS)


async def _csrf_rejected(request: Request, _exc: Exception) -> Response:
    ui: Dashboard = request.app.state.ui
    return _html(ui, "error.html", 403, op=None, page="", message="the form was not sent from this dashboard session (CSRF token missing or wrong)",
                 hint="reload the page and submit it again")


def _safe_next(target: str) -> str:
    # Only back into the dashboard: an open redirect would let a link log you in to a trap.
    return target if target.startswith("/ui/") and not target.startswith("/ui//") and "\\" not in target else "/ui/fleet"


# -- login --------------------------------------------------------------------------------


@router.get("")
@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/fleet", status_code=303)


@router.get("/login")
def login_form(next: str = Query("/ui/fleet", max_length=500), ui: Dashboard = Depends(dashboard)) -> HTMLResponse:
    nonce = new_login_nonce()
    response = _html(ui, "login.html", op=None, page="login", csrf=ui.signer.csrf(nonce), next=_safe_next(next), error="")
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, path="/ui", httponly=True, samesite="strict")
    return response


@router.post("/login")
def login(
    request: Request,
    token: str = Form("", max_length=300),
    csrf: str = Form(""),
    next: str = Form("/ui/fleet", max_length=500),
    ui: Dashboard = Depends(dashboard),
    ctx: ServerContext = Depends(context),
) -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE)
    if not ui.signer.csrf_ok(nonce, csrf):
        raise CsrfRejected()
    try:
        with ctx.db.read() as session:
            cookie = ui.signer.login(session, token, time.time())
    except Unauthorized as exc:
        return _html(ui, "login.html", 401, op=None, page="login", csrf=csrf, next=_safe_next(next), error=exc.message)
    response = RedirectResponse(_safe_next(next), status_code=303, headers=_HEADERS)
    secure = request.url.scheme == "https"
    response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_TTL_S, path="/ui", httponly=True, samesite="strict", secure=secure)
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    return response


@router.post("/logout")
def logout(_op: Operator = Depends(checked_form)) -> Response:
    response = RedirectResponse("/ui/login", status_code=303, headers=_HEADERS)
    response.delete_cookie(SESSION_COOKIE, path="/ui")
    return response


# -- pages --------------------------------------------------------------------------------


def _show(request: Request, ui: Dashboard, op: Operator, name: str, gather: Callable[[], dict[str, Any]]) -> HTMLResponse:
    """Gather a page's data and render it; a refusal (no such device, bad filter) is shown as a page."""
    try:
        data = gather()
    except EdgeshipError as exc:
        return _error(ui, op, exc)
    return _page(request, ui, op, name, **data)


@router.get("/fleet")
def fleet_page(
    request: Request,
    tag: str = Query("", max_length=330, description="k=v"),
    op: Operator = Depends(operator),
    ui: Dashboard = Depends(dashboard),
    ctx: ServerContext = Depends(context),
) -> HTMLResponse:
    return _show(request, ui, op, "fleet", lambda: {"fleet": views.fleet_page(ctx, tag), "label": views.release_label})


@router.get("/devices/{device_id}")
def device_page(
    request: Request, device_id: str, op: Operator = Depends(operator), ui: Dashboard = Depends(dashboard), ctx: ServerContext = Depends(context)
) -> HTMLResponse:
    return _show(request, ui, op, "device", lambda: {"d": views.device_page(ctx, device_id), "label": views.release_label})


@router.get("/releases")
def releases_page(request: Request, op: Operator = Depends(operator), ui: Dashboard = Depends(dashboard), ctx: ServerContext = Depends(context)) -> HTMLResponse:
    return _show(request, ui, op, "releases", lambda: {"r": views.releases_page(ctx)})


@router.get("/rollouts")
def rollouts_page(request: Request, op: Operator = Depends(operator), ui: Dashboard = Depends(dashboard), ctx: ServerContext = Depends(context)) -> HTMLResponse:
    return _show(request, ui, op, "rollouts", lambda: {"cards": views.rollouts_page(ctx), "error": ""})


@router.post("/rollouts/{rollout_id}/{action}")
def act_on_rollout(
    request: Request,
    rollout_id: str,
    action: str,
    reason: str = Form("", max_length=500),
    rollback: bool = Form(True, description="abort only: order devices back to the previous release"),
    op: Operator = Depends(checked_form),
    ui: Dashboard = Depends(dashboard),
    ctx: ServerContext = Depends(context),
) -> Response:
    try:
        views.act_on_rollout(ctx, rollout_id, action, reason, rollback)
    except EdgeshipError as exc:
        # The page again, with what went wrong (e.g. resuming a rollout that just completed).
        status, _code = status_of(exc)
        return _page(request, ui, op, "rollouts", status, cards=views.rollouts_page(ctx), error=exc.message)
    return RedirectResponse(f"/ui/rollouts#{quote(rollout_id)}", status_code=303, headers=_HEADERS)


@router.get("/experiments")
def experiments_page(request: Request, op: Operator = Depends(operator), ui: Dashboard = Depends(dashboard), ctx: ServerContext = Depends(context)) -> HTMLResponse:
    return _show(request, ui, op, "experiments", lambda: {"experiments": views.experiments_page(ctx)})


@router.get("/federated")
def federated_page(request: Request, op: Operator = Depends(operator), ui: Dashboard = Depends(dashboard), ctx: ServerContext = Depends(context)) -> HTMLResponse:
    return _show(request, ui, op, "federated", lambda: {"cards": views.federated_page(ctx)})
