"""The service container: every long-lived object, built once from Settings and passed down."""

from dataclasses import dataclass

from server.accounts.service import AccountService
from server.clock import Clock, SystemClock
from server.db import Database
from server.deployments.service import DeploymentService
from server.hardware import hardware_skus
from server.metering.sinks import Sink, sink_from_settings
from server.metering.writer import MeteringWriter
from server.models.builds import BuildService
from server.models.service import Builder, ModelService
from server.predictions.service import PredictionService
from server.runtime.base import Runtime
from server.runtime.builder import LocalBuilder
from server.runtime.envs import EnvCache
from server.runtime.local import LocalRuntime
from server.scheduler.scheduler import ClientFactory, Scheduler
from server.settings import Settings
from server.webhooks.service import WebhookService


@dataclass
class Services:
    settings: Settings
    db: Database
    clock: Clock
    accounts: AccountService
    models: ModelService
    builds: BuildService
    predictions: PredictionService
    deployments: DeploymentService
    scheduler: Scheduler
    metering: MeteringWriter | None
    webhooks: WebhookService


def build_services(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    builder: Builder | None = None,
    clock: Clock | None = None,
    client_factory: ClientFactory | None = None,
    sink: Sink | None = None,
) -> Services:
    clock = clock or SystemClock()
    db = Database(settings.resolved_database_url(), schema=settings.database_schema)
    if builder is None:
        envs = EnvCache(
            settings.resolved_env_cache_dir(),
            cog_version=settings.runtime.cog_version,
            pip_args=settings.runtime.pip_args,
        )
        builder = LocalBuilder(envs)
    models = ModelService(db, clock, hardware=hardware_skus)
    builds = BuildService(db, clock, models, builder, settings.data_dir)
    metering = settings.metering if settings.metering.enabled else None
    predictions = PredictionService(db, clock, models, metering=metering)
    writer = None
    if metering is not None:
        writer = MeteringWriter(db, sink or sink_from_settings(settings), metering, clock)
        predictions.on_usage_recorded = writer.notify
    scheduler = Scheduler(
        runtime or LocalRuntime(), predictions, settings.runtime, client_factory=client_factory
    )
    predictions.attach(scheduler)
    return Services(
        settings=settings,
        db=db,
        clock=clock,
        accounts=AccountService(db, clock),
        models=models,
        builds=builds,
        predictions=predictions,
        deployments=DeploymentService(db, clock, models),
        scheduler=scheduler,
        metering=writer,
        webhooks=WebhookService(db, clock),
    )
