"""The transparency page at `/`: a static page whose script reads the chain directly.

`mount_web(app)` adds `GET /` (index.html with the deployment's config embedded), and
`GET /web/app.js` / `GET /web/style.css`. `app.js` is built from web/src/*.js by
`node scripts/build_web.mjs` (`make web`); nothing is fetched from a CDN and the page makes no
call to the tokenbridge API: the receipt check runs in the browser against an RPC URL.

The default RPC URL shown to the browser is the `public_rpc_url` setting
(`$TOKENBRIDGE_PUBLIC_RPC_URL`), else the configured `rpc_url` only when it points at this
machine (a private node URL may carry an API key). Transaction hashes link to
`public_explorer_url` (`$TOKENBRIDGE_PUBLIC_EXPLORER_URL`, e.g. https://etherscan.io) when set.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

from tokenbridge.config import Settings, get_settings

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
PUBLIC_RPC_ENV = "TOKENBRIDGE_PUBLIC_RPC_URL"  # the `public_rpc_url` setting
PUBLIC_EXPLORER_ENV = "TOKENBRIDGE_PUBLIC_EXPLORER_URL"  # the `public_explorer_url` setting
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}

# The page loads only its own script and style; the RPC URL is the user's choice, so connect-src is open.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True, slots=True)
class WebConfig:
    """What the page is told about the deployment (all public)."""

    rpc_url: str
    chain_id: int
    vault: str | None
    deploy_block: int
    explorer_url: str = ""  # block explorer base URL (tx links at <base>/tx/<hash>); "" shows plain hashes
    log_range: int = 10_000  # blocks per eth_getLogs (public nodes cap the range; some at 1,000 or less)


def _explorer(url: str | None) -> str:
    """An http(s) explorer base URL without a trailing slash; anything else is dropped."""
    url = (url or "").strip().rstrip("/")
    return url if urlparse(url).scheme in ("http", "https") and urlparse(url).hostname else ""


def config_from_settings(settings: Settings) -> WebConfig:
    """The public RPC URL, the explorer and the vault recorded in deployments/<chain_id>.json (None when absent)."""
    rpc_url = settings.public_rpc_url or (
        settings.rpc_url if urlparse(settings.rpc_url).hostname in _LOCAL_HOSTS else ""
    )
    vault: str | None = None
    deploy_block = 0
    path = settings.deployments_dir / f"{settings.chain_id}.json"
    try:
        record = json.loads(path.read_text())
        vault = str(record["vault"])
        deploy_block = int(record.get("deploy_block", 0))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no (readable) deployment: the page checks receipts against their own vault
    return WebConfig(
        rpc_url=rpc_url,
        chain_id=settings.chain_id,
        vault=vault,
        deploy_block=deploy_block,
        explorer_url=_explorer(settings.public_explorer_url),
        log_range=settings.public_log_range,
    )


def render_index(config: WebConfig) -> str:
    """index.html with the config embedded as inert JSON (`<` escaped so it cannot close the tag)."""
    payload = json.dumps(asdict(config)).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (WEB_DIR / "index.html").read_text().replace("__TOKENBRIDGE_CONFIG__", payload)


def _headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def mount_web(
    app: FastAPI, settings: Settings | None = None, *, config: WebConfig | Callable[[], WebConfig] | None = None
) -> None:
    """Serve the transparency page on `app`. `config` (a value or a factory) overrides the one
    derived from `settings` (default: the process settings), which is re-read per request so a
    deployment recorded after start-up shows up."""

    def current() -> WebConfig:
        if isinstance(config, WebConfig):
            return config
        if config is not None:
            return config()
        return config_from_settings(settings or get_settings())

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(render_index(current()), headers=_headers())

    @app.get("/web/app.js", include_in_schema=False)
    def script() -> Response:
        path = STATIC_DIR / "app.js"
        if not path.is_file():
            return PlainTextResponse(
                "app.js is not built: run `make web` (node scripts/build_web.mjs)", status_code=503
            )
        return FileResponse(path, media_type="text/javascript", headers=_headers())

    @app.get("/web/style.css", include_in_schema=False)
    def style() -> Response:
        return FileResponse(STATIC_DIR / "style.css", media_type="text/css", headers=_headers())
