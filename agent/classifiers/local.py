"""The offline classifier: weighted phrase tables, a few structural signals.

Why this shape: the daemon must triage leads with no API key, no network and
no model download, deterministically (tests and re-classification compare
results), and fast enough never to matter (thousands of messages a second).
A linear score over hand-written features is transparent: every decision can
be explained by the rules that fired, and the rules are data (the tables
below), so adding a language or a phrase is an edit to a table, not code.

How it decides:
1. The text (subject + message) is lower-cased and accent-folded, then split
   into word tokens. Negations are ignored on purpose: "no puedo entrar" and
   "puedo entrar" are both about access, and a rule that flips on "no" would
   be wrong more often than right.
2. Every table entry that occurs adds its weight to its category, once per
   message (repeating a word does not add up). Entries are single words,
   word prefixes (``factur*``) or exact multi-word phrases.
3. Structural signals add to spam: links (more for throw-away domains and
   shorteners), money offers ("desde 99€", "win $1,000"), shouting with
   exclamation marks, and gibberish.
4. Spam is chosen only with strong evidence *and* a clear lead over the
   best other category, because hiding a real lead is worse than showing a
   spam one (spam precision matters more than spam recall).
5. Otherwise the best of sales/support/info wins; with no evidence at all a
   message is a general question (info).

On top of the tables sits a learned layer (see "The learned layer" below): a
multinomial logistic regression trained offline by
bench/train_local_classifier.py and shipped as agent/classifiers/data/local_model.json.
It reads the words, the rule entries that fired, the structural flags and the
rule scores, and decides; spam still needs a confident model, a clear margin
and rule-level spam evidence. Without the weights file the rules decide alone.
Why: the tables alone fit the dev file (100 %) but reached ~77 % on fresh
messages; the learned layer generalises from ~500 labeled leads.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.core.models import Category, Classification

# --------------------------------------------------------------------------------------
# Rule tables. One block per category and language; each line is "weight: entries"
# with entries separated by commas. ``word*`` matches any word starting with
# ``word``; several words form an exact phrase. Entries are written accent-free and
# lower-case (the text is folded the same way), with apostrophes dropped ("cant").
# --------------------------------------------------------------------------------------

_RULES: dict[Category, dict[str, str]] = {
    Category.SALES: {
        "es": """
            3: presupuesto*, cotiz*, propuesta, cuanto cuesta, cuanto costaria, cuanto cobran,
               cobran por, que precio, contratar*, contratarlos, contratarles, demo, demostracion,
               hablar con ventas, equipo de ventas, departamento de ventas, buscando un proveedor,
               buscamos un proveedor, buscamos una agencia, nos haga, nos hagan, me hagan, me haga
            2: precio, precios, tarifa*, costo, coste, costaria, paquete, paquetes, queremos un,
               queremos una, quisieramos, necesitamos un, necesitamos una, necesito un, necesito una,
               me interesa, nos interesa, nos interesaria, estamos interesados, evaluando, cotizar,
               agendar una llamada, agendar una reunion, podemos agendar, queremos anadir,
               queremos agregar, desarrollar, implementan, implementar, prueba gratuita,
               periodo de prueba, descuento, plan de mantenimiento, nos envien, enviarnos,
               me envien, nos pasan, me pasan, contratar sus servicios, cuanto tardarian,
               ustedes lo hacen, nos podrian cotizar, me gustaria contratar, redisenar, rediseno,
               quiero una web, quiero una pagina, quiero una app, necesito una web,
               interesado en sus servicios, interesada en sus servicios, sus servicios de
            1.5: interesado, interesada, interesados
            1: migrar, me gustaria, reunion, llamada, lo hacen, plazo, plazos, automatizar, necesitamos, necesito, queremos, app, aplicacion, pagina web, sitio web,
               tienda online, sistema, chatbot, integrar, integracion, mantenimiento, a mano,
               manualmente, proyecto, cuanto, cobran, alcanza, alta
        """,
        "en": """
            3: quote, quotation, pricing, how much, proposal, book a demo, schedule a demo,
               demo, hire you, want to hire, looking to hire, need a developer,
               looking for someone, looking for an agency, looking for a developer,
               talk to sales, free trial, take this on, scope it, estimate
            2: price, prices, budget, retainer, package, packages, hire, pilot,
               evaluating, comparing, rebuild, build us, we would like, wed like, id like,
               interested in, fixed price, hourly, rates, purchase, buy, vendor, agencies,
               take over, get started, schedule a call, onboard*, upgrade, would like to add,
               redesign, costs, how long would it take, timeline and cost, get a call
            1.5: cost
            1: build, building, develop, app, website, web app, dashboard, integration,
               automate, maintenance, project, need, we need, commit, manually, by hand,
               premium, timeline, discuss, call, migrate, interested
        """,
        "pt": """
            3: orcamento*, proposta, cotacao, quanto custa, quanto custaria, contratar*,
               demonstracao, quanto fica, quanto sai, quanto cobram
            2: agendar uma reuniao, voces fazem, reuniao, preco, precos, gostaria de um, gostaria de uma, gostariamos, queremos,
               desenvolver, pacote, pacotes, plano, teste gratis
            1: automatizar, aplicativo, site, sistema, integracao, projeto, mais ou menos,
               fazem, loja virtual, falar sobre
        """,
    },
    Category.SUPPORT: {
        "es": """
            3: no funciona, dejo de, deja de, dejaron de, caido, caida, no carga, se cierra,
               se cuelga, no puedo entrar, no puedo acceder, no puedo iniciar, cancelar*,
               me cobraron, nos cobraron, cobrasteis, cobrado, cobro doble, doble cobro,
               impago, reembolso, lentisim*, lento, lenta, sigue sin, no me llegan, no llegan,
               no llega, incidencia, se nos vencio, dar de baja, eliminar mi cuenta,
               borrar mi cuenta, no puedo descargar, pantalla en blanco, no cargan, no abre,
               no me deja
            2: error, errores, fallo, falla, fallando, bug, duplic*, vacio, vacios, vacia,
               ya no, contrasena, ticket, molesto, quej*, reclamo*, arreglar, arreglen,
               nos hicieron, que hicieron, me hicieron, nos hizo, hicisteis, migrasteis,
               actualizacion, tarda, tardan, dos veces, que paso, no envia, no sincroniza,
               copia de la factura, exportar, dar de baja mi, bajar de plan, cambiar de plan,
               cambio la tarjeta, cambiar la tarjeta, metodo de pago, vencio, caducado,
               certificado, incorrecta, recuperacion, nadie, esperando, no responde,
               copia de, exportar los datos, descargar las facturas, mis datos, nuestros datos,
               dejar de usar, no recibo, mensaje de error, datos incorrectos, no aparece,
               no aparecen
            1: factura, suscripcion, somos clientes, soy cliente, mi cuenta, nuestra cuenta,
               panel, usuarios, usuario, acceso, revisar*, revisen, verificar, ayuda, problema,
               no encuentro, renovar, ssl, mal, intento, no pasaba, perdiendo, urgente
        """,
        "en": """
            3: not working, doesnt work, isnt working, stopped working, broke, broken, crash*,
               outage, down, cant log in, cannot log in, cant login, unable to log in,
               cant access, double charge, charged twice, charged again, refund, cancel*,
               downgrade, failing, error log, delete my account, close my account,
               dont load, doesnt load, wont load, blank page, blank screen, not loading,
               not receiving, copy of, stopped syncing
            2: error, errors, bug, bugs, issue, issues, problem, fails, failed, password reset,
               reset, password, login, log in, keeps, anymore, havent run, hasnt run, slow,
               charged, my invoice, our invoice, invoice copy, copy of the invoice, export,
               my account, our account, our users, you built, you set up, set up for us,
               built for us, last update, your update, need this fixed, fix, fixed, cuts off,
               doesnt show, annoying, ticket, complaint, wrong amount, our data, my data,
               two factor, 2fa, locked out, missing, disappeared
            1: invoice, account, admin, settings, users, my plan, our plan, since, take a look,
               help, urgent, cant
        """,
        "pt": """
            3: parou de, nao funciona, nao consigo, fora do ar, cancelar*, reembolso,
               cobrado, cobraram, cobranca indevida
            2: erro, falha, senha, lento, voces fizeram, que fizeram, podem verificar, problema,
               travando, trava, segunda via, nao carrega, nao recebo, nao aparece,
               cobranca, expirou
            1: fatura, conta, acesso, ajuda, urgente
        """,
    },
    Category.INFO: {
        "es": """
            5: periodista, reportaje, reportera, reportero
            3: horario, horarios, ubicados, ubicacion, donde estan, donde quedan, abren,
               que servicios, vacante, vacantes, empleo, curriculum, practicas, pasantia*,
               becario, prensa, entrevista*, tfg, tesis,
               trabajo de clase, colaboracion, programa de partners, programa de referidos,
               alianza, ponente, ponentes, meetup, charla, tutorial, curiosidad, documentacion,
               trabajan con, para consultas, referidos, acuerdo de referidos, sin coste,
               sin costo, sin ningun coste, podcast, estan contratando, portfolio, portafolio,
               mi cv, atienden los, abiertos
            2: convenio, sabados, domingos, festivos, fundador*, tecnologias, oficina, remoto, estudiante, estudiantes, universidad, curso, cursos, que hacen,
               que lenguajes, que diferencia, quisiera saber, fuera de, partner, partners, socio,
               articulo, preguntas, evento, organizadores, hacen webs, numero de
            1: informacion, info, whatsapp, telefono, direccion, blog, principiantes, api
        """,
        "en": """
            5: reporter, journalist, for an article, for a story
            3: office hours, opening hours, business hours, located, location, where are you,
               what does your company do, what do you do, who founded, founded, hiring,
               job, jobs, career*, vacanc*, resume, intern, internship, press, interview, hackathon, mentor, volunteer, speaker,
               referral program, partner program, partner or referral, case study, curious,
               docs, documentation, about your company, your team fully remote, podcast,
               no cost, at no cost, free of charge, internships, founder*, are you open,
               do you work with, what technologies, what tools, portfolio
            2: remote, hours, address, office, student, students, class, mba, university,
               article, blog post, piece about, comment, judge, partner, referral, partnership,
               where can i find, information, tutorial, course
            1: info, question, services, what services
        """,
        "pt": """
            5: jornalista, reportagem
            3: onde fica, onde ficam, escritorio, endereco, presencialmente, vaga, vagas,
               estagio, emprego, curriculo, imprensa, entrevista,
               parceria, horario, horarios, atendimento, onde voces, estao localizados
            2: parceiro, informacoes, quais servicos, o que voces fazem, documentacao, curso,
               atendem
        """,
    },
    Category.SPAM: {
        "es": """
            4: tasas aduaneras, no ha podido ser entregado, de parte de google, ficha de empresa,
               sin aval, reciba en su cuenta, cuota de inclusion, estoy sola, mis fotos,
               posicionamiento seo, primera pagina de google, enlace dofollow, por enlace,
               publicaciones patrocinadas
            3: premio, ganador, sorteo, loteria, bitcoin, cripto*, criptomoneda*, prestamo*,
               seo, dofollow, posicionar*, posicionamiento, preseleccionad*, seguidores,
               boletin, darse de baja, responda baja, sera suspendida, verifique sus datos,
               dejara de aparecer, sin ningun riesgo, haga clic, clic aqui, haz clic,
               multiplica, ingresos pasivos, plazas limitadas, gana dinero, gane dinero,
               rentabilidad garantizada, descargue el documento, renueve ahora, su dominio,
               aumente sus ventas, triplicar sus ventas, duplicar sus ventas, precios increibles,
               oferta por tiempo limitado, le envio una oferta, trafico web, tiempo limitado,
               ha sido elegida, ha sido elegido, coste de publicacion, visitas diarias,
               resultados garantizados
            2: verificada, verificarla, verifique, suspendida, mejores ofertas, ofertas,
               ofrecemos, le ofrecemos, estudio gratuito, nuestra propuesta, presentarle,
               le consigue, le conseguimos, call center, comision del, invierte, invierta,
               telegram, unete, felicidades, has sido seleccionado, ha sido seleccionado,
               desde casa, top 10, reclamar, pague, hago paginas, hago webs, escribeme,
               necesitas disenador, le interesa, bajar la factura, su paquete, gana,
               garantizad*, descargue, caducara, sus ventas, agencia de marketing,
               anuncios en facebook, increible*, solo hoy, oferta, podemos ayudarle,
               sus clientes, desarrolladores dedicados, guia de proveedores, aparecer en, visitas
            1: estimado cliente, su empresa, su web, su pagina, su sitio, su negocio,
               su perfil, su ficha, su cuenta, su oficina, sin compromiso, le llamamos,
               llame hoy, somos una agencia, barato, baratos, barata, baratas, transferencia,
               moneda, gastos de envio, guapo, citas, enlace, urgentemente, hablamos
        """,
        "en": """
            4: guest post, next of kin, lottery, hot singles, page 1 of google,
               first page of google, free audit, decision maker, decision makers,
               pricing starts at, keep your current password, password expires,
               passive income, trading bot, daily returns, unsubscribe
            3: congratulations, winner, prize, claim your, barrister, inheritance, crypto*,
               bitcoin, backlink*, seo, link building, sponsored post, newsletter,
               verify your, account will be suspended, suspended, returns guaranteed,
               click here, singles, qualified sales meetings, qualified leads,
               lead generation, free sample, business proposal, benefit both of us,
               has been limited, restore access, log in here, instagram followers, buy followers, secure link, review and pay, pay now,
               confirm your identity, unusual activity, account has been locked,
               gift card, claim now, selected to receive, been selected, increase your sales,
               hire dedicated developers, dedicated developers, offshore, web traffic
            2: won, you have won, guaranteed, ranking, exclusive deals, deals, off, verify,
               verified, expires today, we help agencies, we help companies, our service,
               our services, sdr, outbound, 15 min chat, worth a 15, meet you tonight,
               the late, deposit, next week, sign up, earn, claims agent, email list,
               list of, we can pay, can pay, reply for, dear friend, followers, likes, cheap, pay via, locked, freelance,
               i can build, i can redesign, i can help you, we can help you, marketing agency,
               facebook ads, limited time, today only, more customers, outsourc*, your sales,
               attached is your invoice, your invoice
            1: your website, your site, your blog, your business, agencies like yours,
               dear sir, dear sir madam, link, emails, free
        """,
        "pt": """
            4: vale compras, clique aqui, foi sorteado, foi sorteada
            3: parabens, sorteado, sorteada, premio, premios, resgatar, resgate, ganhou,
               renda extra, bitcoin, cripto*, ganhe dinheiro, trabalhando em casa,
               trabalhe em casa, clique no link
            2: em casa
            3: aumente suas vendas, lista de contatos, contatos de e mail, preco promocional
            2: ganhe, oferta, ofertas, promocao, verifique, promocional, so hoje, suas vendas
            1: seu site, sua empresa, gratis
        """,
    },
}

#: Stopwords that tell the languages apart (shared words such as "de", "que", "a"
#: are left out on purpose). Accent-folded like the text.
_STOPWORDS: dict[str, frozenset[str]] = {
    "es": frozenset(
        """el la los las del y en por con una un es al lo como pero sus le ya este porque
        esta entre cuando muy sin sobre tambien hasta hay donde quien desde todo nos durante
        todos uno les ni otros ese eso ellos esto mi antes algunos unos yo otro otras otra
        tanto esa estos mucho quienes nada muchos cual poco ella estar estas algunas algo
        nosotros hola buenas buenos dias gracias tienen quiero necesito ustedes os vosotros
        su sus pueden puede hacen estoy estamos somos soy hace ayer nuestro nuestra usted
        mas tengo queremos podrian saludos""".split()
    ),
    "en": frozenset(
        """the and to of in is it you that for on with this are be at have i we your our my
        not can do does what how please hi hello thanks would could will from there they
        an or but if was were has had been just any some about when where who which their
        its me us them dont cant im hey dear team can't need want""".split()
    ),
    "pt": frozenset(
        """o os um uma em com nao do da dos das no na nos nas ao pelo pela isso voce voces
        tem sao meu minha seu sua obrigado obrigada ola bom dia gostaria gostariamos
        fizeram podem vou quero queremos tambem ja so ate depois sem mesmo aos esse essa
        ele ela eles elas mais muito estou estamos onde fica""".split()
    ),
}

_STOPWORD_LANGS: dict[str, tuple[str, ...]] = {}
for _lang, _words in _STOPWORDS.items():
    for _w in _words:
        _STOPWORD_LANGS[_w] = (*_STOPWORD_LANGS.get(_w, ()), _lang)

#: Characters only one of the three languages writes.
_LANG_CHARS = {"es": "ñ¿¡", "pt": "ãõçê"}

# Accent folding via str.translate (much faster than unicodedata per message).
_FOLD = str.maketrans(
    "áàâäãåéèêëíìîïóòôöõúùûüñçÁÀÂÄÃÅÉÈÊËÍÌÎÏÓÒÔÖÕÚÙÛÜÑÇ’‘`´",
    "aaaaaaeeeeiiiiooooouuuuncAAAAAAEEEEIIIIOOOOOUUUUNC''''",
)
_WORD_RE = re.compile(r"[a-z0-9]+")
_URL_RE = re.compile(
    r"(?:https?://|www\.)\S+|\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:com|net|org|info|top|xyz|"
    r"club|online|site|ly|me|io|co|es|br|mx|ar|pt|biz|shop|win|click|link|live)(?:/\S*)?",
    re.IGNORECASE,
)
#: Throw-away TLDs, shorteners and credential-bait words inside a link.
_SHADY_URL_RE = re.compile(
    r"\.(?:top|xyz|club|online|site|biz|win|click|link|live|info)\b|bit\.ly|t\.me/|tinyurl|"
    r"(?:verif|login|secur|password|premio|resgat|prize|claim|pago|pay|account|bank|invoice|"
    r"factura|wallet|gift|bonus|winner|renov)[a-z-]*[./]",
    re.IGNORECASE,
)
_MONEY = r"(?:(?:us\s?)?[$€£]|r\$)\s?\d[\d.,]*|\d[\d.,]*\s?(?:[$€£]|usd|eur|euros?|dolares|reais)"
#: "from 99€", "starts at $299", "win $1,000": a price or prize offered to us.
_MONEY_OFFER_RE = re.compile(
    r"(?:desde|a partir de|from|starts at|starting at|only|solo|apenas|por|win|won|gana|ganhe|"
    r"earn|ganar|hasta|up to|sum of)\s+(?:" + _MONEY + r")",
    re.IGNORECASE,
)
#: "$15/hour", "4 USD la hora", "99€ al mes": a rate someone is selling us.
_MONEY_RATE_RE = re.compile(
    r"(?:" + _MONEY + r")\s*(?:usd\s*)?(?:/\s*(?:h|hr|hour|mes|month|mo)\b|per hour|per month|"
    r"an hour|a month|la hora|por hora|al mes|por mes|a hora|per week|a week|por semana|a la semana|al dia|per day|a day)",
    re.IGNORECASE,
)
#: "$15 million", "US$ 12,500,000": sums no real lead mentions in a first contact.
_BIG_MONEY_RE = re.compile(r"\d\s*(?:million|millones|milhoes|mil millones)\b|\d{1,3}(?:[.,]\d{3}){2,}")
#: "error 500", "502 errors", "a 404 page": a customer quoting a failure.
_HTTP_ERROR_RE = re.compile(
    r"\b(?:error|errores|errors|erro|http)\s*(?:4|5)\d\d\b|\b(?:4|5)\d\d\s*(?:error|errors|errores|erro|page|pagina)",
)
_SENTENCE_RE = re.compile(r"(?<=[.!?…])\s+|\n+")
_GREETING_RE = re.compile(
    r"^(?:hi there|hey there|hi team|hello team|hola equipo|olá equipe|ola equipe|good morning|"
    r"good afternoon|buenos dias|buenos días|buenas tardes|buenas noches|buen dia|buen día|"
    r"bom dia|boa tarde|boa noite|dear [^,.!]{0,30}|estimad[oa]s?(?:/a)?(?: [^,.!:]{0,20})?|"
    r"hola|hello|hi|hey|ola|olá|buenas|saludos|greetings)\b[\s,.!:;—–-]*",
    re.IGNORECASE,
)
_CONSONANT_RUN_RE = re.compile(r"[b-df-hj-np-tv-xz]{5}")
_DIGIT_RE = re.compile(r"\d")
_DOMAIN_HINT_RE = re.compile(r"[a-z0-9]\.[a-z]")
_LETTER_RE = re.compile(r"[^\W\d_]")
_UPPER_RE = re.compile(r"[A-ZÁÉÍÓÚÑÇÃÕÂÊÔÀÜ]")
_KEYBOARD_RUNS = ("asd", "sdf", "dfg", "fgh", "ghj", "hjk", "jkl", "qwe", "zxc", "xcv")

#: Spam needs this much evidence, and this lead over the best other category.
SPAM_MIN_SCORE = 4.0
SPAM_MARGIN = 2.0
SUMMARY_MAX = 200


@dataclass(frozen=True, slots=True)
class _Entry:
    category: Category
    weight: float
    key: str  # the entry as written, used to count it once per message


def _parse_rules(
    rules: dict[Category, dict[str, str]],
) -> tuple[dict[str, list[_Entry]], dict[str, list[_Entry]], dict[str, list[tuple[tuple[str, ...], _Entry]]]]:
    """Turn the tables into three lookups: exact words, prefixes, phrases by first word."""
    words: dict[str, list[_Entry]] = {}
    prefixes: dict[str, list[_Entry]] = {}
    phrases: dict[str, list[tuple[tuple[str, ...], _Entry]]] = {}
    for category, by_lang in rules.items():
        for block in by_lang.values():
            for raw_line in block.strip().split("\n"):
                line = raw_line.strip()
                if not line:
                    continue
                # Continuation lines carry the weight of the line above.
                if re.match(r"^\d+(?:\.\d+)?:", line):
                    weight_s, line = line.split(":", 1)
                    weight = float(weight_s)
                for item in line.split(","):
                    term = item.strip()
                    if not term:
                        continue
                    entry = _Entry(category, weight, f"{category}:{term}")
                    toks = tuple(_WORD_RE.findall(term.replace("*", "").translate(_FOLD).lower()))
                    if not toks:
                        continue
                    if term.endswith("*") and len(toks) == 1:
                        prefixes.setdefault(toks[0], []).append(entry)
                    elif len(toks) == 1:
                        words.setdefault(toks[0], []).append(entry)
                    else:
                        phrases.setdefault(toks[0], []).append((toks[1:], entry))
    return words, prefixes, phrases


_WORDS, _PREFIXES, _PHRASES = _parse_rules(_RULES)
_PREFIX_LENGTHS = sorted({len(p) for p in _PREFIXES})


def fold(text: str) -> str:
    """Lower-case and strip accents, so "Cotización" and "cotizacion" match one rule."""
    return text.translate(_FOLD).lower().replace("'", "")


def detect_language(text: str, default: str = "es") -> str:
    """es, en or pt by counting language-specific stopwords (and letters like ñ or ã).

    Why stopwords: they are frequent in any message, however short, and do
    not depend on the topic. Ties go to ``default`` (the deployment's usual
    language), which is where an undecidable message most likely comes from.
    """
    return _detect(text, _WORD_RE.findall(fold(text)), default)


def _detect(text: str, tokens: list[str], default: str) -> str:
    scores = dict.fromkeys(_STOPWORDS, 0.0)
    for tok in tokens:
        for lang in _STOPWORD_LANGS.get(tok, ()):
            scores[lang] += 1.0
    for lang, chars in _LANG_CHARS.items():
        for c in chars:
            if c in text:
                scores[lang] += 2.0 * text.lower().count(c)
    best = max(scores.values())
    if best <= 0:
        return default
    winners = [lang for lang, s in scores.items() if s == best]
    if len(winners) == 1:
        return winners[0]
    return default if default in winners else winners[0]


def summarize(text: str, limit: int = SUMMARY_MAX) -> str:
    """The first meaningful sentence, one line, at most ``limit`` characters.

    Why not generate one: the summary is shown in a sheet and a reply, so it
    must be faithful and in the writer's language; the writer's own first
    real sentence (greetings skipped) is both.
    """
    flat = text.strip()
    if not flat:
        return ""
    candidates = [s.strip() for s in _SENTENCE_RE.split(flat) if s and s.strip()]
    chosen = ""
    for sentence in candidates:
        stripped = _GREETING_RE.sub("", sentence).lstrip(" ,.;:—–-").rstrip(" ,;:—–-")
        if len(_WORD_RE.findall(fold(stripped))) >= 3:
            chosen = stripped
            break
    if not chosen:
        chosen = _GREETING_RE.sub("", candidates[0]).lstrip(" ,.;:—–-").rstrip(" ,;:—–-") or candidates[0]
    chosen = " ".join(chosen.split())
    if chosen and chosen[0].islower():
        chosen = chosen[0].upper() + chosen[1:]
    return clip(chosen, limit)


def clip(text: str, limit: int = SUMMARY_MAX) -> str:
    """One line, at most ``limit`` characters, cut at a word boundary with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:") + "…"


def _is_gibberish(tok: str) -> bool:
    """A token nobody types on purpose: no vowels, long consonant runs, keyboard rows,
    or a chunk repeated ("qweqwe")."""
    if len(tok) < 4 or tok.isdigit():
        return False
    if len(set(tok)) <= 2:  # "aaaaaaa", "xdxdxd"
        return True
    vowels = sum(tok.count(v) for v in "aeiouy")
    if vowels == 0 or vowels / len(tok) < 0.2:
        return True
    if any(run in tok for run in _KEYBOARD_RUNS):
        return True
    half = len(tok) // 2
    if len(tok) % 2 == 0 and tok[:half] == tok[half:]:
        return True
    return _CONSONANT_RUN_RE.search(tok) is not None


@dataclass(slots=True)
class Evidence:
    """What the rule tables and structural checks saw in one message."""

    scores: dict[Category, float]
    fired: set[str]
    tokens: list[str]
    flags: list[str]


def rule_evidence(full: str) -> Evidence:
    """Run the rule tables and the structural checks over subject + message."""
    folded = fold(full)
    urls = _URL_RE.findall(folded) if ("//" in folded or _DOMAIN_HINT_RE.search(folded)) else []
    # Words inside links (".../login", "docs-...") say nothing about the writer's
    # intent and are judged structurally instead.
    tokens = _WORD_RE.findall(_URL_RE.sub(" ", folded) if urls else folded)
    scores = dict.fromkeys(Category, 0.0)
    seen: set[str] = set()

    def hit(entries: list[_Entry]) -> None:
        for entry in entries:
            if entry.key not in seen:
                seen.add(entry.key)
                scores[entry.category] += entry.weight

    n = len(tokens)
    for i, tok in enumerate(tokens):
        found = _WORDS.get(tok)
        if found:
            hit(found)
        for k in _PREFIX_LENGTHS:
            if k > len(tok):
                break
            found = _PREFIXES.get(tok[:k])
            if found:
                hit(found)
        for rest, entry in _PHRASES.get(tok, ()):
            end = i + 1 + len(rest)
            if end <= n and tuple(tokens[i + 1 : end]) == rest and entry.key not in seen:
                seen.add(entry.key)
                scores[entry.category] += entry.weight

    has_digit = _DIGIT_RE.search(folded) is not None
    # Gibberish only matters when the words said nothing else.
    check_gibberish = max(scores.values()) < SPAM_MIN_SCORE
    flags: list[str] = []
    scores[Category.SPAM] += LocalClassifier._structural_spam(
        full, folded, tokens, urls, has_digit, check_gibberish, flags
    )
    if has_digit and _HTTP_ERROR_RE.search(folded):
        scores[Category.SUPPORT] += 2.5
        flags.append("http_error")
    return Evidence(scores, seen, tokens, flags)


# --------------------------------------------------------------------------------------
# The learned layer: a multinomial logistic regression trained offline
# (bench/train_local_classifier.py) on labeled leads. Its inputs are the words of
# the message (unigrams, bigrams, 5-letter stems), the rule entries that fired,
# the structural flags and the four rule scores, so the tables stay the backbone
# and the model learns how far to trust each of them and the vocabulary they miss.
# --------------------------------------------------------------------------------------

_CLASSES: tuple[Category, ...] = (Category.SALES, Category.SUPPORT, Category.INFO, Category.SPAM)
MODEL_PATH = Path(__file__).resolve().parent / "data" / "local_model.json"
#: Rule scores enter the model scaled and capped, so one loud table cannot dominate.
RULE_SCALE = 4.0
RULE_CAP = 3.0
STEM_LEN = 5


def model_features(evidence: Evidence) -> list[str]:
    """The sparse binary features of one message (shared by training and inference)."""
    tokens = evidence.tokens
    feats: set[str] = set()
    add = feats.add
    prev = "^"
    for tok in tokens:
        if tok.isdigit():
            tok = "#"
        add("u:" + tok)
        add("b:" + prev + " " + tok)
        if len(tok) > STEM_LEN + 1:
            add("p:" + tok[:STEM_LEN])
        prev = tok
    if tokens:
        add("b:" + prev + " $")
    for key in evidence.fired:
        add("r:" + key)
    for flag in evidence.flags:
        add("s:" + flag)
    n = len(tokens)
    add("len:" + ("0" if n == 0 else "1-4" if n <= 4 else "5-12" if n <= 12 else "13-40" if n <= 40 else "41+"))
    return sorted(feats)


def rule_inputs(evidence: Evidence) -> list[float]:
    """The four rule scores as numeric model inputs (scaled, capped)."""
    return [min(RULE_CAP, evidence.scores[c] / RULE_SCALE) for c in _CLASSES]


@dataclass(frozen=True, slots=True)
class LocalModel:
    """Weights of the learned layer and the spam guard's thresholds."""

    bias: tuple[float, ...]
    weights: dict[str, tuple[float, ...]]
    rule_weights: tuple[tuple[float, ...], ...]  # one row per rule score, one column per class
    spam_min_prob: float
    spam_margin: float
    spam_min_rule: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LocalModel:
        if tuple(data["classes"]) != tuple(str(c) for c in _CLASSES):
            raise ValueError("model classes do not match")
        return cls(
            bias=tuple(float(x) for x in data["bias"]),
            weights={k: tuple(float(x) for x in v) for k, v in data["weights"].items()},
            rule_weights=tuple(tuple(float(x) for x in row) for row in data["rule_weights"]),
            spam_min_prob=float(data["spam_guard"]["min_prob"]),
            spam_margin=float(data["spam_guard"]["margin"]),
            spam_min_rule=float(data["spam_guard"]["min_rule_score"]),
        )

    def logits(self, evidence: Evidence) -> list[float]:
        z0, z1, z2, z3 = self.bias
        weights = self.weights
        for feat in model_features(evidence):
            w = weights.get(feat)
            if w is not None:
                z0 += w[0]
                z1 += w[1]
                z2 += w[2]
                z3 += w[3]
        for value, row in zip(rule_inputs(evidence), self.rule_weights, strict=True):
            if value:
                z0 += value * row[0]
                z1 += value * row[1]
                z2 += value * row[2]
                z3 += value * row[3]
        return [z0, z1, z2, z3]

    def probabilities(self, evidence: Evidence) -> list[float]:
        return softmax(self.logits(evidence))

    def decide(self, probs: list[float], scores: dict[Category, float]) -> tuple[Category, float]:
        """Spam only when the model is sure, clearly ahead, and the rules saw spam signals;
        otherwise the most probable of sales/support/info."""
        p_spam = probs[3]
        best_other = max(probs[:3])
        if (
            p_spam >= self.spam_min_prob
            and p_spam - best_other >= self.spam_margin
            and scores[Category.SPAM] >= self.spam_min_rule
        ):
            return Category.SPAM, round(min(0.99, p_spam), 3)
        index = max(range(3), key=lambda i: (probs[i], -i))
        total = sum(probs[:3]) or 1.0
        return _CLASSES[index], round(min(0.99, max(0.3, probs[index] / total)), 3)


def softmax(z: list[float]) -> list[float]:
    top = max(z)
    exps = [math.exp(v - top) for v in z]
    total = sum(exps)
    return [e / total for e in exps]


def load_model(path: Path = MODEL_PATH) -> LocalModel | None:
    """The shipped weights, or None (rules only) when the file is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return LocalModel.from_json(json.load(fh))
    except (OSError, ValueError, KeyError, TypeError):
        return None


_MODEL: LocalModel | None = load_model()


@dataclass(frozen=True, slots=True)
class LocalVerdict:
    """A classification with the evidence behind it (for debugging and evaluation)."""

    classification: Classification
    scores: dict[str, float]
    fired: tuple[str, ...]
    probabilities: dict[str, float] = field(default_factory=dict)


class LocalClassifier:
    """Offline, deterministic classifier for Spanish, English and Portuguese."""

    name = "local"

    def __init__(self, *, default_language: str = "es") -> None:
        self.default_language = default_language

    async def classify(self, text: str, *, subject: str | None = None) -> Classification:
        """Async face of :meth:`classify_sync`; it is CPU-only and takes microseconds,
        so it runs inline rather than in a thread."""
        await asyncio.sleep(0)
        return self.classify_sync(text, subject)

    def classify_sync(self, text: str, subject: str | None = None) -> Classification:
        return self.explain(text, subject).classification

    def state(self) -> dict[str, Any]:
        return {"backend": "local"}

    def explain(self, text: str, subject: str | None = None) -> LocalVerdict:
        """Classify and say which rules fired (used by tests and ``leadbox eval``)."""
        text = text or ""
        full = f"{subject}\n{text}" if subject else text
        evidence = rule_evidence(full)
        scores = evidence.scores
        model = _MODEL
        probabilities: dict[str, float] = {}
        if model is not None:
            probs = model.probabilities(evidence)
            probabilities = {str(c): round(p, 4) for c, p in zip(_CLASSES, probs, strict=True)}
            category, confidence = model.decide(probs, scores)
        else:
            category, confidence = self._decide(scores)
        language = _detect(full, evidence.tokens, self.default_language)
        classification = Classification(
            category=category,
            summary=summarize(text or (subject or "")),
            language=language,
            confidence=confidence,
            classifier=self.name,
        )
        fired = tuple(sorted(evidence.fired))
        return LocalVerdict(
            classification, {str(k): round(v, 2) for k, v in scores.items()}, fired, probabilities
        )

    @staticmethod
    def _structural_spam(
        raw: str, folded: str, tokens: list[str], urls: list[str], has_digit: bool,
        check_gibberish: bool, flags: list[str] | None = None,
    ) -> float:
        """Signals that do not depend on vocabulary (their names go to ``flags``)."""
        found: list[str] = [] if flags is None else flags
        score = 0.0
        if urls:
            score += 0.5
            found.append("url")
            if any(_SHADY_URL_RE.search(u) for u in urls):
                score += 2.0
                found.append("shady_url")
            if any(u.split("/")[0].count("-") >= 2 for u in (x.split("://")[-1] for x in urls)):
                score += 1.0
                found.append("hyphen_domain")
        if has_digit:
            if _MONEY_OFFER_RE.search(folded):
                score += 2.0
                found.append("money_offer")
            if _BIG_MONEY_RE.search(folded):
                score += 2.0
                found.append("big_money")
            if _MONEY_RATE_RE.search(folded):
                score += 2.0
                found.append("money_rate")
        if "!!" in raw or "$" in raw or "€" in raw:
            letters = _LETTER_RE.findall(raw)
            if len(letters) >= 20:
                upper = len(_UPPER_RE.findall(raw)) / len(letters)
                if upper > 0.7:
                    score += 1.5
                    found.append("shouting_money")
        if "!!!" in raw:
            score += 0.5
            found.append("bangs")
        alpha = [t for t in tokens if not t.isdigit()] if check_gibberish else []
        if alpha:
            gib = sum(1 for t in alpha if _is_gibberish(t))
            if gib / len(alpha) >= 0.4 and gib >= 1:
                score += 5.0
                found.append("gibberish")
        return score

    @staticmethod
    def _decide(scores: dict[Category, float]) -> tuple[Category, float]:
        """Spam only with strong, clear evidence; else the best of the other three."""
        spam = scores[Category.SPAM]
        others = {c: s for c, s in scores.items() if c is not Category.SPAM}
        best_other = max(others.values())
        if spam >= SPAM_MIN_SCORE and spam >= best_other + SPAM_MARGIN:
            margin = spam - best_other
            return Category.SPAM, _confidence(margin, spam + best_other)
        if best_other <= 0:
            return Category.INFO, 0.35
        # Ties resolve in a fixed order (sales > support > info): deterministic,
        # and a possible buyer is the costlier lead to under-prioritise.
        ordered = sorted(others.items(), key=lambda kv: -kv[1])
        top_cat, top = ordered[0]
        second = max(ordered[1][1], spam)
        return top_cat, _confidence(top - second, top + second)


def _confidence(margin: float, total: float) -> float:
    """Map the winning margin to 0.4..0.97: big, clear margins are confident."""
    if total <= 0:
        return 0.4
    value = 0.4 + 0.57 * (margin / (total + 2.0))
    return round(min(0.97, max(0.4, value)), 3)
