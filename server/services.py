"""The service container: every long-lived object, built once from Settings and passed down."""

from dataclasses import dataclass

import httpx

from server.accounts.service import AccountService
from server.clock import Clock, SystemClock
from server.db import Database
from server.deployments.service import DeploymentService
from server.files import blobs
from server.files.inputs import FileInputs
from server.files.outputs import with_upload_url
from server.files.rehost import OutputRehost
from server.files.service import FilesService
from server.hardware import Inventory
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
from server.streams.hub import StreamHub
from server.webhooks.deliverer import WebhookDeliverer
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
    deliverer: WebhookDeliverer
    inventory: Inventory
    files: FilesService
    streams: StreamHub


def build_services(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    builder: Builder | None = None,
    clock: Clock | None = None,
    client_factory: ClientFactory | None = None,
    sink: Sink | None = None,
    inventory: Inventory | None = None,
    webhook_http: httpx.AsyncClient | None = None,
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
    inventory = inventory or Inventory.from_settings(settings.hardware)
    models = ModelService(db, clock, hardware=inventory.skus)
    builds = BuildService(db, clock, models, builder, settings.data_dir)
    metering = settings.metering if settings.metering.enabled else None
    predictions = PredictionService(db, clock, models, metering=metering)
    writer = None
    if metering is not None:
        writer = MeteringWriter(db, sink or sink_from_settings(settings), metering, clock)
        predictions.on_usage_recorded = writer.notify
    files = FilesService(
        db, clock, settings, blobs.store_from_settings(settings), blobs.staging_dir(settings)
    )
    predictions.resolve_inputs = FileInputs(files).resolve
    if files.upload_url is not None:
        predictions.store_outputs = OutputRehost(files)
    streams = StreamHub(keepalive=settings.stream_keepalive)
    predictions.listen(streams)
    scheduler = Scheduler(
        with_upload_url(
            runtime or LocalRuntime(cpu_policy=settings.runtime.cpu_policy), files.upload_url
        ),
        predictions,
        settings.runtime,
        inventory,
        client_factory=client_factory,
        on_setup_failed=models.mark_setup_failed,
    )
    predictions.attach(scheduler)
    webhooks = WebhookService(db, clock, settings.webhooks)
    deliverer = WebhookDeliverer(
        db,
        clock,
        settings.webhooks,
        webhooks,
        default_base_url=settings.public_url or f"http://{settings.host}:{settings.port}",
        http=webhook_http,
    )
    predictions.listen(deliverer)
    deployments = DeploymentService(db, clock, models)
    deployments.on_release = scheduler.apply
    predictions.placement_of = deployments.placement_of
    return Services(
        settings=settings,
        db=db,
        clock=clock,
        accounts=AccountService(db, clock),
        models=models,
        builds=builds,
        predictions=predictions,
        deployments=deployments,
        scheduler=scheduler,
        metering=writer,
        webhooks=webhooks,
        deliverer=deliverer,
        inventory=inventory,
        files=files,
        streams=streams,
    )
