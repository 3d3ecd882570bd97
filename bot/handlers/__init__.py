"""The routers in match order; the fallback router goes last."""

from __future__ import annotations

from aiogram import Router

from bot.handlers import (
    admin,
    again,
    fallback,
    fulfilment,
    merchant,
    orders,
    payments,
    review,
    shop,
)

ROUTERS = (payments, merchant, admin, review, fulfilment, shop, orders, again, fallback)


def get_routers() -> list[Router]:
    return [m.create_router() for m in ROUTERS]
