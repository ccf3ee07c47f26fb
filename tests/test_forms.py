"""Website forms against the real daemon: encodings, field names, presets, HTML answers, CORS.

The browser itself is in test_forms_browser.py; here every path, error paths included, is
driven over HTTP with the exact bytes a browser or a form service sends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fixtures.daemon import settle

ORIGIN = "https://www.example.com"
FORM = "application/x-www-form-urlencoded"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
ADMIN = {"LEADBOX_ADMIN_TOKEN": "admintok"}
AUTH = {"Authorization": "Bearer admintok"}


async def lead(c: Any, lead_id: str) -> dict[str, Any]:
    r = await c.get(f"/leads/{lead_id}", headers=AUTH)
    assert r.status == 200
    return dict(await r.json())


async def all_leads(c: Any) -> list[dict[str, Any]]:
    r = await c.get("/leads?limit=500", headers=AUTH)
    return list((await r.json())["leads"])


def outbox(tmp_path: Path) -> list[str]:
    folder = tmp_path / "outbox"
    return sorted(p.read_text(errors="replace") for p in folder.glob("*.eml")) if folder.exists() else []


async def test_urlencoded_form_with_spanish_names_is_a_lead(make_daemon: Any) -> None:
    d, c = await make_daemon(ADMIN)
    body = ("nombre=Mar%C3%ADa+L%C3%B3pez&correo=maria%40example.es&telefono=%2B34+600+000+000"
            "&mensaje=Quiero+un+presupuesto+para+200+unidades&empresa=Acme&utm_source=google"
            "&boton=Enviar&page=%2Fcontacto")
    r = await c.post("/leads", data=body, headers={"Content-Type": FORM, "Accept": "application/json"})
    assert r.status == 202, await r.text()
    got = await lead(c, (await r.json())["id"])
    assert (got["name"], got["email"], got["phone"], got["company"]) == (
        "María López", "maria@example.es", "+34 600 000 000", "Acme")
    assert got["message"] == "Quiero un presupuesto para 200 unidades"
    assert got["metadata"] == {"utm_source": "google", "page": "/contacto"}  # "boton" is ignored
    await settle(d, 1)
    assert (await lead(c, got["id"]))["state"] == "replied"


async def test_browser_form_post_ends_on_the_thank_you_page(make_daemon: Any) -> None:
    _, c = await make_daemon()
    r = await c.post("/leads", data="your-name=Ana&your-email=ana%40example.com&your-message=Hola%2C+precio%3F",
                     headers={"Content-Type": FORM, "Accept": BROWSER_ACCEPT, "Accept-Language": "es-ES,es;q=0.9"},
                     allow_redirects=False)
    assert r.status == 303
    location = r.headers["Location"]
    assert location.endswith("/forms/thanks?lang=es") and location.startswith("http://127.0.0.1:")
    page = await c.get("/forms/thanks?lang=es")
    assert page.status == 200 and "¡Gracias!" in await page.text()
    assert "Thank you" in await (await c.get("/forms/thanks?lang=en")).text()


async def test_thank_you_url_and_public_url(make_daemon: Any) -> None:
    _, c = await make_daemon({"LEADBOX_HTTP__PUBLIC_URL": "https://leads.example.com/"})
    form = "name=Ana&email=ana%40example.com&message=hola"
    r = await c.post("/leads", data=form, headers={"Content-Type": FORM, "Accept": BROWSER_ACCEPT,
                                                    "Accept-Language": "en-GB"}, allow_redirects=False)
    assert r.headers["Location"] == "https://leads.example.com/forms/thanks?lang=en"
    _, c2 = await make_daemon({"LEADBOX_FORMS__THANK_YOU_URL": "https://www.example.com/gracias"})
    r = await c2.post("/leads", data=form.replace("ana%40", "bea%40"),
                      headers={"Content-Type": FORM, "Accept": BROWSER_ACCEPT}, allow_redirects=False)
    assert (r.status, r.headers["Location"]) == (303, "https://www.example.com/gracias")


async def test_invalid_browser_form_gets_an_html_page_with_field_errors(make_daemon: Any) -> None:
    d, c = await make_daemon()
    r = await c.post("/leads", data="nombre=%3Cscript%3Ex%3C%2Fscript%3E&correo=no-es-correo&mensaje=",
                     headers={"Content-Type": FORM, "Accept": BROWSER_ACCEPT, "Accept-Language": "es",
                              "Referer": 'https://www.example.com/contacto?"><script>'})
    assert r.status == 422 and r.content_type == "text/html"
    page = await r.text()
    assert "Correo electrónico no es una dirección de correo válida" in page
    assert "Mensaje es obligatorio" in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # the hostile Referer is inert text
    assert 'href="https://www.example.com/contacto?&quot;&gt;&lt;script&gt;"' in page
    assert await d.store.counts() == {}


async def test_json_clients_keep_the_json_contract_for_forms(make_daemon: Any) -> None:
    _, c = await make_daemon()
    r = await c.post("/leads", data="nombre=Ana", headers={"Content-Type": FORM})
    assert r.status == 422 and r.content_type == "application/json"
    assert {e["field"] for e in (await r.json())["errors"]} == {"email", "message"}


async def test_multipart_form_and_its_refusals(make_daemon: Any) -> None:
    d, c = await make_daemon(ADMIN)
    boundary = "----WebKitFormBoundaryAbc123"

    def multipart(*parts: bytes) -> bytes:
        return b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts) + \
            b"--" + boundary.encode() + b"--\r\n"

    def field(name: str, value: str) -> bytes:
        return f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode()

    ctype = f"multipart/form-data; boundary={boundary}"
    ok = multipart(field("nome", "João Silva"), field("email", "joao@example.com.br"),
                   field("mensagem", "Preciso de um orçamento"))
    r = await c.post("/leads", data=ok, headers={"Content-Type": ctype})
    assert r.status == 202, await r.text()
    got = await lead(c, (await r.json())["id"])
    assert (got["name"], got["message"]) == ("João Silva", "Preciso de um orçamento")

    file_part = (b'Content-Disposition: form-data; name="cv"; filename="cv.pdf"\r\n'
                 b"Content-Type: application/pdf\r\n\r\n%PDF-1.4 ...")
    r = await c.post("/leads", data=multipart(field("email", "x@example.com"), file_part),
                     headers={"Content-Type": ctype})
    assert r.status == 422
    assert (await r.json())["errors"][0] == {"field": "cv", "message": "file uploads are not accepted"}
    latin1 = (b'Content-Disposition: form-data; name="message"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n'
              b"caf\xe9")
    r = await c.post("/leads", data=multipart(field("email", "y@example.com"), latin1), headers={"Content-Type": ctype})
    assert r.status == 422 and (await r.json())["errors"][0]["message"] == "is not valid UTF-8"
    r = await c.post("/leads", data=b"no boundary here", headers={"Content-Type": "multipart/form-data"})
    assert r.status == 422
    assert len(await all_leads(c)) == 1


async def test_repeated_fields_and_non_utf8_forms_are_clear_errors(make_daemon: Any) -> None:
    _, c = await make_daemon()
    r = await c.post("/leads", data="email=a%40example.com&email=b%40example.com&name=A&message=m",
                     headers={"Content-Type": FORM})
    assert r.status == 422
    assert (await r.json())["errors"] == [{"field": "email", "message": "appears more than once"}]
    r = await c.post("/leads", data=b"name=caf%E9&email=a%40example.com&message=m", headers={"Content-Type": FORM})
    assert r.status == 422 and (await r.json())["errors"][0]["message"] == "is not valid UTF-8 form data"
    r = await c.post("/leads", data=b"name=caf\xc3\xa9&email=a%40example.com&message=m", headers={"Content-Type": FORM})
    assert r.status == 422  # raw bytes above 0x7f are not urlencoded


async def test_form_limits_and_auth_are_the_same_as_json(make_daemon: Any) -> None:
    _, c = await make_daemon({"LEADBOX_HTTP__MAX_BODY_BYTES": "2048"})
    big = "name=A&email=a%40example.com&message=" + "x" * 4000
    r = await c.post("/leads", data=big,
                     headers={"Content-Type": FORM, "Accept": BROWSER_ACCEPT, "Accept-Language": "en"})
    assert r.status == 413 and r.content_type == "text/html" and "too long" in await r.text()
    _, c2 = await make_daemon({"LEADBOX_HTTP__WEBHOOK_AUTH": "bearer", "LEADBOX_WEBHOOK_SECRET": "s3cret"})
    form = "name=A&email=a%40example.com&message=hola"
    assert (await c2.post("/leads", data=form, headers={"Content-Type": FORM})).status == 401
    r = await c2.post("/leads", data=form, headers={"Content-Type": FORM, "Authorization": "Bearer s3cret"})
    assert r.status == 202
    _, c3 = await make_daemon({"LEADBOX_HTTP__RATE_LIMIT_PER_MINUTE": "1"})
    hdrs = {"Content-Type": FORM, "Accept": BROWSER_ACCEPT, "Accept-Language": "en"}
    assert (await c3.post("/leads", data=form, headers=hdrs, allow_redirects=False)).status == 303
    r = await c3.post("/leads", data=form.replace("a%40", "b%40"), headers=hdrs, allow_redirects=False)
    assert r.status == 429 and "wait a minute" in await r.text() and r.headers["Retry-After"]


async def test_cors_preflight_and_answers(make_daemon: Any) -> None:
    _, c = await make_daemon({"LEADBOX_HTTP__CORS_ORIGINS": json.dumps([ORIGIN])})
    pre = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "content-type"}
    r = await c.options("/leads", headers=pre)
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in r.headers["Access-Control-Allow-Headers"]
    assert "X-Leadbox-Signature" in r.headers["Access-Control-Allow-Headers"]
    assert int(r.headers["Access-Control-Max-Age"]) > 0
    assert (await c.options("/leads/tally", headers=pre)).status == 204
    r = await c.options("/leads", headers={**pre, "Origin": "https://evil.example"})
    assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
    body = {"name": "Ana", "email": "ana@example.com", "message": "hola"}
    r = await c.post("/leads", json=body, headers={"Origin": ORIGIN})
    assert r.status == 202 and r.headers["Access-Control-Allow-Origin"] == ORIGIN
    r = await c.post("/leads", json={**body, "email": "bea@example.com"}, headers={"Origin": "https://evil.example"})
    assert r.status == 202 and "Access-Control-Allow-Origin" not in r.headers


async def test_require_origin(make_daemon: Any) -> None:
    _, c = await make_daemon({"LEADBOX_HTTP__CORS_ORIGINS": json.dumps([ORIGIN]),
                              "LEADBOX_FORMS__REQUIRE_ORIGIN": "true"})
    body = {"name": "Ana", "email": "ana@example.com", "message": "hola"}
    r = await c.post("/leads", json=body)
    assert r.status == 403 and (await r.json())["errors"][0]["field"] == "Origin"
    assert (await c.post("/leads", json=body, headers={"Origin": "https://evil.example"})).status == 403
    assert (await c.post("/leads", json=body, headers={"Origin": ORIGIN})).status == 202


async def test_honeypot_is_skipped_and_does_not_take_the_address(make_daemon: Any, tmp_path: Path) -> None:
    d, c = await make_daemon(ADMIN)
    bot = "name=Bot&email=ana%40example.com&message=cheap+pills&website=http%3A%2F%2Fspam.example"
    r = await c.post("/leads", data=bot, headers={"Content-Type": FORM, "Accept": "application/json"})
    assert r.status == 202 and (await r.json())["status"] == "received"  # the same answer as a success
    bot_id = (await r.json())["id"]
    got = await lead(c, bot_id)
    assert (got["state"], got["skip_reason"], got["email"]) == ("skipped", "honeypot", "ana@example.com")
    human = "name=Ana&email=ana%40example.com&message=Quiero+informaci%C3%B3n&website="
    r = await c.post("/leads", data=human, headers={"Content-Type": FORM, "Accept": "application/json"})
    assert r.status == 202 and (await r.json())["id"] != bot_id  # a new lead, not a duplicate
    await settle(d, 2)
    assert (await lead(c, (await r.json())["id"]))["state"] == "replied"
    mails = outbox(tmp_path)
    assert len(mails) == 1 and "ana@example.com" in mails[0]  # only the human was answered
    skipped = [x for x in await all_leads(c) if x["skip_reason"] == "honeypot"]
    assert [x["id"] for x in skipped] == [bot_id] and skipped[0]["mirror_status"] == "disabled"


async def test_json_aliases_and_a_servers_own_website_field(make_daemon: Any) -> None:
    _, c = await make_daemon(ADMIN)
    r = await c.post("/leads", json={"nombre": "Ana", "correo": "ana@example.com", "mensaje": "hola",
                                     "website": "https://acme.example", "utm_campaign": "otoño"})
    assert r.status == 202
    got = await lead(c, (await r.json())["id"])
    assert (got["name"], got["email"], got["message"], got["state"] != "skipped") == (
        "Ana", "ana@example.com", "hola", True)  # no Origin: a server's "website" is not a honeypot
    assert got["metadata"] == {"utm_campaign": "otoño"}
    r = await c.post("/leads", json={"name": "Bot", "email": "bot@example.com", "message": "x",
                                     "website": "filled"}, headers={"Origin": ORIGIN})
    assert (await lead(c, (await r.json())["id"]))["skip_reason"] == "honeypot"


TALLY = {
    "eventId": "a4cb511e-d513-4fa5-baee-b815d718dfd1", "eventType": "FORM_RESPONSE",
    "createdAt": "2026-11-30T10:15:00.000Z",
    "data": {
        "responseId": "2wgx4n", "submissionId": "2wgx4n", "respondentId": "dwQKYm", "formId": "VwbNEw",
        "formName": "Contacto web", "createdAt": "2026-11-30T10:15:00.000Z",
        "fields": [
            {"key": "question_3ErWxj", "label": "Nombre completo", "type": "INPUT_TEXT", "value": "Lucía Pérez"},
            {"key": "question_w4Q4Bz", "label": "Tu correo", "type": "INPUT_EMAIL", "value": "lucia@example.es"},
            {"key": "question_3jZaEb", "label": "Teléfono", "type": "INPUT_PHONE_NUMBER", "value": "+34611222333"},
            {"key": "question_wMGLqv", "label": "Mensaje", "type": "TEXTAREA",
             "value": "¿Hacéis envíos a Canarias? Necesito 50 cajas."},
            {"key": "question_nPJkX2", "label": "Interés", "type": "MULTIPLE_CHOICE", "value": ["opt-1"],
             "options": [{"id": "opt-1", "text": "Ventas"}, {"id": "opt-2", "text": "Soporte"}]},
        ],
    },
}

TYPEFORM = {
    "event_id": "01HQ8Z4W2Y", "event_type": "form_response",
    "form_response": {
        "form_id": "lT4Z3j", "token": "a3a12ec67a1365927098a606107fac15", "submitted_at": "2026-11-30T10:15:00Z",
        "definition": {"id": "lT4Z3j", "title": "Contact us", "fields": [
            {"id": "Qd2fYb", "title": "What's your name?", "type": "short_text", "ref": "name"},
            {"id": "SMEUb7", "title": "Your email", "type": "email", "ref": "01FKQZ2EK4K7SZS388XGFC1K9N"},
            {"id": "Kv8Fmz", "title": "How can we help?", "type": "long_text", "ref": "message"},
            {"id": "Gx1Rr3", "title": "Company", "type": "short_text", "ref": "01FKQZ2EK4K7SZS388XGFC1K9Z"},
            {"id": "Hp0Tq1", "title": "Budget", "type": "multiple_choice", "ref": "budget"},
        ]},
        "answers": [
            {"type": "text", "text": "Daniel Craig", "field": {"id": "Qd2fYb", "type": "short_text", "ref": "name"}},
            {"type": "email", "email": "daniel@example.com",
             "field": {"id": "SMEUb7", "type": "email", "ref": "01FKQZ2EK4K7SZS388XGFC1K9N"}},
            {"type": "text", "text": "We need a quote for 300 licences.",
             "field": {"id": "Kv8Fmz", "type": "long_text", "ref": "message"}},
            {"type": "text", "text": "Universal Exports",
             "field": {"id": "Gx1Rr3", "type": "short_text", "ref": "01FKQZ2EK4K7SZS388XGFC1K9Z"}},
            {"type": "choice", "choice": {"label": "10k+"},
             "field": {"id": "Hp0Tq1", "type": "multiple_choice", "ref": "budget"}},
        ],
    },
}

WEBFLOW = {
    "triggerType": "form_submission",
    "payload": {"name": "Contact Form", "siteId": "65427cf400e02b306eaa049c",
                "data": {"Name": "Olivia Chen", "Email": "olivia@example.org", "Message": "Do you ship to Canada?",
                         "Phone": ""},
                "submittedAt": "2026-11-30T10:15:00.000Z", "id": "6321ca84df3949bfc6752327",
                "formId": "65429eadebe8a9f3a30f62d0"},
}


async def test_built_in_presets(make_daemon: Any) -> None:
    _, c = await make_daemon(ADMIN)
    expected = {
        "tally": (TALLY, "Lucía Pérez", "lucia@example.es", "Contacto web"),
        "typeform": (TYPEFORM, "Daniel Craig", "daniel@example.com", "Contact us"),
        "webflow": (WEBFLOW, "Olivia Chen", "olivia@example.org", "Contact Form"),
    }
    for preset, (payload, name, email, form) in expected.items():
        r = await c.post(f"/leads/{preset}", json=payload)
        assert r.status == 202, (preset, await r.text())
        got = await lead(c, (await r.json())["id"])
        assert (got["name"], got["email"], got["metadata"]["form"]) == (name, email, form), preset
    tally = next(x for x in await all_leads(c) if x["email"] == "lucia@example.es")
    assert tally["phone"] == "+34611222333" and "Canarias" in tally["message"]
    tf = next(x for x in await all_leads(c) if x["email"] == "daniel@example.com")
    # a generated ref falls back to the question's title ("Company")
    assert (tf["message"], tf["company"]) == ("We need a quote for 300 licences.", "Universal Exports")


async def test_preset_errors_and_custom_presets(make_daemon: Any) -> None:
    presets = {"micrm": {"email": "contact.emails.0", "name": "contact.name", "message": "note"}}
    _, c = await make_daemon({**ADMIN, "LEADBOX_FORMS__PRESETS": json.dumps(presets)})
    r = await c.post("/leads/nosuch", json=TALLY)
    assert r.status == 404 and "tally" in (await r.json())["errors"][0]["message"]
    r = await c.post("/leads/tally", json={"data": {"fields": "nope"}})
    assert r.status == 422 and "data.fields" in (await r.json())["errors"][0]["message"]
    r = await c.post("/leads/typeform", json=TALLY)
    assert r.status == 422
    r = await c.post("/leads/micrm", json={"contact": {"name": "Eva", "emails": ["eva@example.com"]}, "note": "hi"})
    assert r.status == 202
    got = await lead(c, (await r.json())["id"])
    assert (got["name"], got["email"], got["message"]) == ("Eva", "eva@example.com", "hi")
    r = await c.post("/leads/micrm", json={"contact": {"name": "Eva"}, "note": "hi"})
    assert r.status == 422 and (await r.json())["errors"][0]["field"] == "email"


async def test_unknown_content_type_names_what_is_accepted(make_daemon: Any) -> None:
    _, c = await make_daemon()
    r = await c.post("/leads", data="x", headers={"Content-Type": "text/plain"})
    assert r.status == 415
    assert "x-www-form-urlencoded" in (await r.json())["errors"][0]["message"]


async def test_require_origin_leaves_preset_routes_to_servers(make_daemon: Any) -> None:
    _, c = await make_daemon({"LEADBOX_HTTP__CORS_ORIGINS": json.dumps([ORIGIN]),
                              "LEADBOX_FORMS__REQUIRE_ORIGIN": "true"})
    assert (await c.post("/leads/webflow", json=WEBFLOW)).status == 202  # a service posts with no Origin
