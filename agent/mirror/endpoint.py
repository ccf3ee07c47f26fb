"""Send gspread's requests to another Sheets endpoint (a local stand-in, a proxy).

gspread takes an HTTP client class (not an instance) and builds its URLs from constants bound at
import time, so rewriting the prefix per request is the one clean seam.
"""

from __future__ import annotations

from typing import Any

import requests
from gspread.http_client import HTTPClient

__all__ = ["GOOGLE_SHEETS_ROOT", "http_client_for"]

GOOGLE_SHEETS_ROOT = "https://sheets.googleapis.com"


def http_client_for(endpoint: str) -> type[HTTPClient]:
    """An HTTPClient class that sends gspread's Google URLs to ``endpoint`` instead."""
    root = endpoint.rstrip("/")

    class _EndpointHTTPClient(HTTPClient):
        def request(self, method: str, endpoint: str, *args: Any, **kwargs: Any) -> requests.Response:
            if root != GOOGLE_SHEETS_ROOT and endpoint.startswith(GOOGLE_SHEETS_ROOT):
                endpoint = root + endpoint[len(GOOGLE_SHEETS_ROOT):]
            return super().request(method, endpoint, *args, **kwargs)

    return _EndpointHTTPClient
