"""``leadbox form-snippet``: a contact form to paste into a website, made for this daemon.

It uses the daemon's public URL, the configured honeypot and thank-you page, so what is
pasted works as configured: a plain HTML form (no script, works everywhere) and a ``fetch()``
variant for sites that want to stay on the page.
"""

from __future__ import annotations

from html import escape

from agent.config import Config

_FORM = """<!-- leadbox contact form: a plain HTML form, no script needed -->
<form method="post" action="{action}" accept-charset="UTF-8">
  <label>Nombre <input name="name" autocomplete="name" required maxlength="200"></label>
  <label>Email <input name="email" type="email" autocomplete="email" required maxlength="254"></label>
  <label>Teléfono <input name="phone" type="tel" autocomplete="tel" maxlength="200"></label>
  <label>Mensaje <textarea name="message" required maxlength="20000"></textarea></label>
{honeypot}  <button type="submit">Enviar</button>
</form>
"""

_HONEYPOT = """  <!-- Leave this hidden field empty: bots fill it, people never see it. -->
  <div style="position:absolute;left:-5000px" aria-hidden="true">
    <input name="{field}" type="text" tabindex="-1" autocomplete="off" value="">
  </div>
"""

_FETCH = """<!-- The same form sent with fetch(): the page stays put. Needs your site's origin in
     http.cors_origins ({origin_note}). -->
<script>
document.querySelector('form[action="{action}"]').addEventListener("submit", async (event) => {{
  event.preventDefault();
  const form = event.target;
  const data = Object.fromEntries(new FormData(form));
  const answer = await fetch("{action}", {{
    method: "POST", headers: {{"Content-Type": "application/json", "Accept": "application/json"}},
    body: JSON.stringify(data),
  }});
  if (answer.ok) {{ form.replaceWith("¡Gracias! Te responderemos pronto."); return; }}
  const {{errors}} = await answer.json().catch(() => ({{errors: []}}));
  alert((errors || []).map(e => e.field + ": " + e.message).join("\\n") || "Error " + answer.status);
}});
</script>
"""


def base_url(config: Config) -> str:
    """``http.public_url``, else the address the daemon listens on (fine for a local try)."""
    http = config.settings.http
    if http.public_url:
        return http.public_url
    host = "localhost" if http.host in ("0.0.0.0", "127.0.0.1", "::", "") else http.host
    return f"http://{host}:{http.port}"


def render(config: Config, origin: str | None = None) -> str:
    """The snippet text, with a note when something in the config would stop it working."""
    action = escape(f"{base_url(config)}/leads", quote=True)
    forms, http = config.settings.forms, config.settings.http
    honeypot = _HONEYPOT.format(field=escape(forms.honeypot_field, quote=True)) if forms.honeypot_field else ""
    if origin is None:
        origin_note = "add it, e.g. cors_origins = [\"https://www.example.com\"]"
    elif origin in http.cors_origins:
        origin_note = f"{origin} is listed"
    else:
        origin_note = f"{origin} is NOT listed yet: add it to http.cors_origins"
    notes = []
    if not http.public_url:
        notes.append("<!-- http.public_url is empty: the address below is the daemon's own; set the URL "
                     "people reach it at. -->")
    if http.webhook_auth != "none":
        notes.append(f"<!-- http.webhook_auth = {http.webhook_auth}: browsers cannot send that secret; "
                     "use webhook_auth = \"none\" with a honeypot and rate limit for public forms. -->")
    after = forms.thank_you_url or f"{base_url(config)}/forms/thanks"
    notes.append(f"<!-- After sending, people land on {escape(after)} (forms.thank_you_url). -->")
    return "\n".join([*notes, _FORM.format(action=action, honeypot=honeypot),
                      _FETCH.format(action=action, origin_note=escape(origin_note))])
