"""The console's own words in Spanish and English, picked from ``Accept-Language``.

Category and priority names are not here: they come from ``[labels]`` in the config, so a team
sees its own names.
"""

from __future__ import annotations

WORDS: dict[str, dict[str, str]] = {
    "es": {
        "console": "Consola de leads", "sign_in": "Entrar", "sign_out": "Salir", "user": "Usuario",
        "password": "Contraseña o token de administración", "bad_login": "Usuario o contraseña incorrectos.",
        "throttled": "Demasiados intentos. Espera unos minutos.",
        "not_enabled": "La consola no está activada: define LEADBOX_ADMIN_TOKEN o crea un usuario con "
                       "«leadbox users add NOMBRE».",
        "overview": "Resumen", "leads": "Leads", "search": "Buscar", "search_ph": "nombre, email, empresa o texto",
        "state": "Estado", "category": "Categoría", "priority": "Prioridad", "intake": "Entrada",
        "mailbox": "Buzón", "from": "Desde", "to": "Hasta", "any": "Todas", "filter": "Filtrar",
        "reset": "Limpiar", "next": "Siguientes", "none_found": "No hay leads con estos filtros.",
        "received": "Recibido", "name": "Nombre", "email": "Email", "phone": "Teléfono",
        "company": "Empresa", "message": "Mensaje", "subject": "Asunto", "source": "Origen",
        "summary": "Resumen", "language": "Idioma", "confidence": "Confianza", "classifier": "Clasificador",
        "fallback": "Clasificado sin el LLM (respaldo local)", "rule": "Regla",
        "classification": "Clasificación", "timeline": "Historial", "reply": "Respuesta",
        "no_reply": "Sin respuesta", "attempts": "Intentos", "error": "Error", "mirror": "Hoja de cálculo",
        "interactions": "Contactos repetidos", "actions": "Acciones", "retry": "Reintentar",
        "correct": "Corregir", "send_reply": "Enviar la respuesta ahora", "handled": "Marcar como atendido",
        "assign": "Asignar", "assigned": "Asignado a", "handled_by": "Atendido por", "nobody": "nadie",
        "backlog": "Pendientes por estado", "per_day": "Leads por día y categoría (30 días)",
        "latency": "Tiempo hasta la respuesta", "fallbacks": "Clasificados con el respaldo local",
        "health": "Estado de los servicios", "last_poll": "Última lectura del buzón",
        "never": "nunca", "waiting": "esperando", "failed_leads": "fallidos", "count": "Total",
        "corrected": "Corregido por", "retried": "Reintentado por", "reply_requested": "Respuesta pedida por",
        "reply_settled": "Respuesta comprobada en el buzón por", "alert": "Aviso al equipo",
        "marked_handled": "Atendido por", "assigned_to": "Asignado a", "by": "por",
        "state_received": "recibido", "state_classified": "clasificado", "state_saved": "guardado",
        "state_mirrored": "en la hoja", "state_replied": "respondido", "state_skipped": "omitido",
        "state_failed": "fallido", "all": "Todos", "back": "Volver a la lista", "lead": "Lead",
        "webhook": "web", "email_intake": "correo", "seconds": "s", "skip_reason": "Motivo",
        "reply_text": "Texto enviado", "mirror_status": "Estado en la hoja", "saved": "Guardado.",
        "csrf": "El formulario caducó. Vuelve a cargar la página.",
        "forget": "Borrar a esta persona", "forget_confirm": "Escribe su email para confirmar:",
        "status_waiting": "en espera (límites de envío)", "until": "hasta",
        "inbox_off": "Buzón desactivado", "status_sent": "enviada", "status_skipped": "omitida",
        "status_uncertain": "incierta (revisa la carpeta Enviados)", "status_pending": "pendiente",
        "status_done": "escrita", "status_disabled": "desactivada", "status_error": "error",
    },
    "en": {
        "console": "Lead console", "sign_in": "Sign in", "sign_out": "Sign out", "user": "User",
        "password": "Password or admin token", "bad_login": "Wrong user or password.",
        "throttled": "Too many attempts. Wait a few minutes.",
        "not_enabled": "The console is not enabled: set LEADBOX_ADMIN_TOKEN or add a user with "
                       "'leadbox users add NAME'.",
        "overview": "Overview", "leads": "Leads", "search": "Search", "search_ph": "name, email, company or text",
        "state": "State", "category": "Category", "priority": "Priority", "intake": "Intake",
        "mailbox": "Mailbox", "from": "From", "to": "To", "any": "Any", "filter": "Filter",
        "reset": "Clear", "next": "Next", "none_found": "No leads match these filters.",
        "received": "Received", "name": "Name", "email": "Email", "phone": "Phone",
        "company": "Company", "message": "Message", "subject": "Subject", "source": "Source",
        "summary": "Summary", "language": "Language", "confidence": "Confidence", "classifier": "Classifier",
        "fallback": "Classified without the LLM (local fallback)", "rule": "Rule",
        "classification": "Classification", "timeline": "Timeline", "reply": "Reply",
        "no_reply": "No reply", "attempts": "Attempts", "error": "Error", "mirror": "Sheet",
        "interactions": "Repeat contacts", "actions": "Actions", "retry": "Retry",
        "correct": "Correct", "send_reply": "Send the reply now", "handled": "Mark handled",
        "assign": "Assign", "assigned": "Assigned to", "handled_by": "Handled by", "nobody": "nobody",
        "backlog": "Backlog by state", "per_day": "Leads per day by category (30 days)",
        "latency": "Time to reply", "fallbacks": "Classified by the local fallback",
        "health": "Services", "last_poll": "Last mailbox poll",
        "never": "never", "waiting": "waiting", "failed_leads": "failed", "count": "Total",
        "corrected": "Corrected by", "retried": "Retried by", "reply_requested": "Reply requested by",
        "reply_settled": "Reply checked in the mailbox by", "alert": "Team alert",
        "marked_handled": "Handled by", "assigned_to": "Assigned to", "by": "by",
        "state_received": "received", "state_classified": "classified", "state_saved": "saved",
        "state_mirrored": "in the sheet", "state_replied": "replied", "state_skipped": "skipped",
        "state_failed": "failed", "all": "All", "back": "Back to the list", "lead": "Lead",
        "webhook": "web", "email_intake": "email", "seconds": "s", "skip_reason": "Reason",
        "reply_text": "Text sent", "mirror_status": "Sheet status", "saved": "Saved.",
        "csrf": "The form expired. Reload the page.",
        "forget": "Erase this person", "forget_confirm": "Type their email to confirm:",
        "status_waiting": "waiting (sending limits)", "until": "until",
        "inbox_off": "Inbox disabled", "status_sent": "sent", "status_skipped": "skipped",
        "status_uncertain": "uncertain (check the Sent folder)", "status_pending": "pending",
        "status_done": "written", "status_disabled": "disabled", "status_error": "error",
    },
}


def pick(accept_language: str | None) -> str:
    """``es`` or ``en``: the first of them the browser lists; Spanish when it lists neither."""
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in WORDS:
            return code
    return "es"
