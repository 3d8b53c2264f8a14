"""Liveness and readiness."""

from __future__ import annotations

import logging

from flask import Blueprint
from flask import Response
from flask import jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from authz.api.errors import problem
from authz.extensions import db

bp = Blueprint("health", __name__)
log = logging.getLogger("authz.health")


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up; says nothing about its dependencies."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when the database answers; 503 otherwise, recovering by itself when it returns."""
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("database not reachable", extra={"code": type(exc).__name__})
        return problem(503, "not_ready", "The database is not reachable.",
                       headers={"Retry-After": "5"})
    return jsonify(status="ready")
