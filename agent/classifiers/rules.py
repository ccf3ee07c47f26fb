"""The rule tables of the local classifier: weighted phrases per category and language.

Why tables: every decision can be explained by the entries that fired, and adding a language or a
phrase is an edit to a table, not code. The learned layer (``model``) reads which entries fired
and the four category scores, and learns how far to trust each.

Entries are matched on folded text (``text.fold``): lower-case, accent-free, apostrophes dropped.
Each entry counts once per message; ``word*`` matches any word starting with ``word``; several
words form an exact phrase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.classifiers.text import FOLD, WORD_RE
from agent.core.models import Category

# --------------------------------------------------------------------------------------
# Rule tables. One block per category and language; each line is "weight: entries"
# with entries separated by commas. ``word*`` matches any word starting with
# ``word``; several words form an exact phrase. Entries are written accent-free and
# lower-case (the text is folded the same way), with apostrophes dropped ("cant").
# --------------------------------------------------------------------------------------

RULES: dict[Category, dict[str, str]] = {
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
            1: migrar, me gustaria, reunion, llamada, lo hacen, plazo, plazos, automatizar,
               necesitamos, necesito, queremos, app, aplicacion, pagina web, sitio web,
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
            2: agendar uma reuniao, voces fazem, reuniao, preco, precos, gostaria de um,
               gostaria de uma, gostariamos, queremos,
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
            2: convenio, sabados, domingos, festivos, fundador*, tecnologias, oficina, remoto,
               estudiante, estudiantes, universidad, curso, cursos, que hacen,
               que lenguajes, que diferencia, quisiera saber, fuera de, partner, partners, socio,
               articulo, preguntas, evento, organizadores, hacen webs, numero de
            1: informacion, info, whatsapp, telefono, direccion, blog, principiantes, api
        """,
        "en": """
            5: reporter, journalist, for an article, for a story
            3: office hours, opening hours, business hours, located, location, where are you,
               what does your company do, what do you do, who founded, founded, hiring,
               job, jobs, career*, vacanc*, resume, intern, internship, press, interview, hackathon,
               mentor, volunteer, speaker,
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
               has been limited, restore access, log in here, instagram followers, buy followers,
               secure link, review and pay, pay now,
               confirm your identity, unusual activity, account has been locked,
               gift card, claim now, selected to receive, been selected, increase your sales,
               hire dedicated developers, dedicated developers, offshore, web traffic
            2: won, you have won, guaranteed, ranking, exclusive deals, deals, off, verify,
               verified, expires today, we help agencies, we help companies, our service,
               our services, sdr, outbound, 15 min chat, worth a 15, meet you tonight,
               the late, deposit, next week, sign up, earn, claims agent, email list,
               list of, we can pay, can pay, reply for, dear friend, followers, likes, cheap,
               pay via, locked, freelance,
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


@dataclass(frozen=True, slots=True)
class Entry:
    """One table entry: the category it speaks for, its weight, and its key (counted once)."""

    category: Category
    weight: float
    key: str


def parse_rules(
    rules: dict[Category, dict[str, str]],
) -> tuple[dict[str, list[Entry]], dict[str, list[Entry]], dict[str, list[tuple[tuple[str, ...], Entry]]]]:
    """Turn the tables into three lookups: exact words, prefixes, phrases by first word."""
    words: dict[str, list[Entry]] = {}
    prefixes: dict[str, list[Entry]] = {}
    phrases: dict[str, list[tuple[tuple[str, ...], Entry]]] = {}
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
                    entry = Entry(category, weight, f"{category}:{term}")
                    toks = tuple(WORD_RE.findall(term.replace("*", "").translate(FOLD).lower()))
                    if not toks:
                        continue
                    if term.endswith("*") and len(toks) == 1:
                        prefixes.setdefault(toks[0], []).append(entry)
                    elif len(toks) == 1:
                        words.setdefault(toks[0], []).append(entry)
                    else:
                        phrases.setdefault(toks[0], []).append((toks[1:], entry))
    return words, prefixes, phrases


WORDS, PREFIXES, PHRASES = parse_rules(RULES)
PREFIX_LENGTHS = sorted({len(p) for p in PREFIXES})
