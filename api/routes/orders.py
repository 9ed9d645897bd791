"""Work orders and their deliveries."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter

from api import convert
from api import schemas as s
from api.deps import NowDep, PrincipalDep, RuntimeDep
from payments import deliveries, orders, rates
from payments.parties import Role

router = APIRouter(tags=["orders"])


@router.post("/v1/orders", status_code=201, response_model=s.OrderRead)
def post_order(body: s.OrderCreate, who: PrincipalDep, rt: RuntimeDep, now: NowDep) -> s.OrderRead:
    rate = rates.parse_rate(body.piece_rate.rate)
    commission = None
    if body.commission_rate is not None:
        commission = rates.Commission(
            kind=rates.CommissionKind(body.commission_rate.kind),
            rate=rates.parse_rate(body.commission_rate.rate),
        )
    with rt.transaction() as session:
        order = orders.post(
            session,
            principal=who,
            reference=body.reference,
            product=body.product,
            rate=rate,
            unit=rates.Unit(body.piece_rate.unit),
            minutes_per_piece=Decimal(body.minutes_per_piece),
            quantity=body.quantity,
            deadline=body.deadline,
            region=body.region,
            intermediary_id=body.intermediary_id,
            commission=commission,
            assignments=[orders.AssignmentRequest(a.homeworker_id, a.quantity) for a in body.assignments],
            policy=rt.settings.upah_fair_rate_policy,
            now=now,
        )
    rt.metrics.orders_posted.inc()
    if not order.fair_rate.get("meets_benchmark", True):
        rt.metrics.below_benchmark.inc()
    return convert.order(order)


@router.get("/v1/orders/{order_id}", response_model=s.OrderRead)
def get_order(order_id: s.IdParam, who: PrincipalDep, rt: RuntimeDep) -> s.OrderRead:
    """The buyer's own order (CONTRACT.md: buyer)."""
    who.require(Role.BUYER)
    with rt.read() as session:
        return convert.order(orders.get(session, principal=who, order_id=order_id))


@router.post("/v1/orders/{order_id}/close", response_model=s.OrderRead)
def close_order(order_id: s.IdParam, who: PrincipalDep, rt: RuntimeDep, now: NowDep) -> s.OrderRead:
    with rt.transaction() as session:
        return convert.order(orders.close(session, principal=who, order_id=order_id, now=now))


@router.post("/v1/orders/{order_id}/cancel", response_model=s.OrderRead)
def cancel_order(order_id: s.IdParam, who: PrincipalDep, rt: RuntimeDep, now: NowDep) -> s.OrderRead:
    with rt.transaction() as session:
        return convert.order(orders.cancel(session, principal=who, order_id=order_id, now=now))


@router.post("/v1/orders/{order_id}/deliveries", status_code=201, response_model=s.DeliveryRead)
async def record_delivery(
    order_id: s.IdParam, body: s.DeliveryCreate, who: PrincipalDep, rt: RuntimeDep, now: NowDep
) -> s.DeliveryRead:
    delivery = await rt.run(
        lambda session: deliveries.record(
            session,
            principal=who,
            order_id=order_id,
            homeworker_id=body.homeworker_id,
            pieces=body.pieces,
            now=now,
        )
    )
    return convert.delivery(delivery)


@router.get("/v1/orders/{order_id}/deliveries", response_model=list[s.DeliveryRead])
def list_deliveries(order_id: s.IdParam, who: PrincipalDep, rt: RuntimeDep) -> list[s.DeliveryRead]:
    with rt.read() as session:
        return [
            convert.delivery(d) for d in deliveries.list_for_order(session, principal=who, order_id=order_id)
        ]


@router.get("/v1/deliveries/{delivery_id}", response_model=s.DeliveryRead)
def get_delivery(delivery_id: s.IdParam, who: PrincipalDep, rt: RuntimeDep) -> s.DeliveryRead:
    with rt.read() as session:
        return convert.delivery(deliveries.get(session, principal=who, delivery_id=delivery_id))


@router.post("/v1/deliveries/{delivery_id}/confirm", response_model=s.DeliveryRead)
async def confirm_delivery(
    delivery_id: s.IdParam, body: s.ConfirmationCreate, who: PrincipalDep, rt: RuntimeDep, now: NowDep
) -> s.DeliveryRead:
    delivery = await rt.run(
        lambda session: deliveries.confirm(
            session,
            principal=who,
            delivery_id=delivery_id,
            accepted=body.accepted,
            rejected=body.rejected,
            reason=body.reason,
            now=now,
        )
    )
    rt.metrics.deliveries_confirmed.inc()
    rt.metrics.pieces_accepted.inc(delivery.accepted or 0)
    rt.metrics.pieces_rejected.inc(delivery.rejected or 0)
    rt.metrics.earnings_posted.inc(delivery.earning or 0)
    return convert.delivery(delivery)
