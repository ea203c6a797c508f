// drugsync on AWS as one component of the team's SST v3 app.
//
// SST v3 runs Pulumi underneath, and `run()` in sst.config.ts may create any
// Pulumi AWS resource. This component uses those resources directly
// (@pulumi/aws), so it type-checks in CI against published types without
// the SST CLI (which `sst install` fetches from GitHub, out of CI's reach).
//
// What it creates:
// - one ECS Fargate service running the writer, and a standby when
//   `standby` is set (the writer lease in Redis decides which task writes;
//   a deploy starts the new task as a standby and it takes over when the
//   old one stops);
// - the nightly `--reconcile` as a scheduled task at 02:00 UTC;
// - least-privilege IAM (Bedrock InvokeModel on the one model, the database
//   secret, the Redis URL secret) and a log group;
// - alarms on lag, on no writer, and on embedding calls by the nightly
//   reconcile (on a quiet night it should make none: calls mean drift).
//
// The checkpoint lives on each task's own ephemeral storage, never on shared
// EFS: the checkpoint file also holds the instance id the writer lease is
// taken under, so a shared file would give the writer and the standby the
// same id, and both would believe they hold the lease. A new task has no
// checkpoint and resumes from the position Redis stored with the last batch.

import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

/** Inputs of the drugsync deployment. */
export interface DrugsyncArgs {
  /** Container image, e.g. `<account>.dkr.ecr.<region>.amazonaws.com/drugsync:<tag>` (docker/Dockerfile). */
  image: pulumi.Input<string>;
  /** Subnets the tasks run in (private, with routes to Aurora, Redis, Bedrock and ECR). */
  subnetIds: pulumi.Input<pulumi.Input<string>[]>;
  /** Security groups of the tasks (egress to Aurora 3306, Redis 6379, HTTPS). */
  securityGroupIds: pulumi.Input<pulumi.Input<string>[]>;
  /** An existing ECS cluster; one is created when absent. */
  clusterArn?: pulumi.Input<string>;
  /** The RDS-managed secret of the Aurora cluster (drugsync reads it: mysql.secret_arn). */
  mysqlSecretArn: pulumi.Input<string>;
  /** KMS key of that secret, when it is not the AWS-managed one. */
  mysqlSecretKmsKeyArn?: pulumi.Input<string>;
  /** Secret holding `rediss://user:password@host:6379` (injected as DRUGSYNC_REDIS_URL). */
  redisUrlSecretArn: pulumi.Input<string>;
  /** The embedding model, e.g. `arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0`. */
  bedrockModelArn: pulumi.Input<string>;
  /** Run a hot standby beside the writer. Default: false. */
  standby?: boolean;
  /** When the reconcile runs (EventBridge). Default: 02:00 UTC daily. */
  reconcileSchedule?: string;
  /** SNS topic for the alarms; none when absent. */
  alarmTopicArn?: pulumi.Input<string>;
  /** Lag (seconds) the lag alarm fires above. Default: 300, as metrics.ready_max_lag_secs. */
  maxLagSeconds?: number;
  /** Embedding calls by one nightly reconcile that raise the alarm. Default: 100. */
  nightlyEmbedCallsAlarm?: number;
  /** Days the logs are kept. Default: 30. */
  logRetentionDays?: number;
}

const CONFIG_PATH = "/etc/drugsync/drugsync.toml";
const METRICS_PORT = 9464;

/** The drugsync writer (and standby), its nightly reconcile, IAM, logs and alarms. */
export class Drugsync extends pulumi.ComponentResource {
  /** The service running the writer (and standby). */
  public readonly service: aws.ecs.Service;
  /** Where every task logs (JSON lines). */
  public readonly logGroup: aws.cloudwatch.LogGroup;

  constructor(name: string, args: DrugsyncArgs, opts?: pulumi.ComponentResourceOptions) {
    super("drugsync:aws:Drugsync", name, {}, opts);
    const parent = { parent: this };
    const region = aws.getRegionOutput({}, parent).name;

    this.logGroup = new aws.cloudwatch.LogGroup(`${name}Logs`, { retentionInDays: args.logRetentionDays ?? 30 }, parent);
    const clusterArn = args.clusterArn ?? new aws.ecs.Cluster(`${name}Cluster`, {}, parent).arn;

    // Pulls the image, writes logs, and injects the Redis URL secret.
    const executionRole = new aws.iam.Role(
      `${name}Execution`,
      { assumeRolePolicy: aws.iam.assumeRolePolicyForPrincipal({ Service: "ecs-tasks.amazonaws.com" }) },
      parent,
    );
    new aws.iam.RolePolicyAttachment(
      `${name}ExecutionManaged`,
      { role: executionRole.name, policyArn: "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy" },
      parent,
    );
    new aws.iam.RolePolicy(
      `${name}ExecutionSecrets`,
      {
        role: executionRole.id,
        policy: pulumi.jsonStringify({
          Version: "2012-10-17",
          Statement: [{ Effect: "Allow", Action: "secretsmanager:GetSecretValue", Resource: args.redisUrlSecretArn }],
        }),
      },
      parent,
    );

    // What drugsync itself may do: embed with one model, read the database secret.
    const taskRole = new aws.iam.Role(
      `${name}Task`,
      { assumeRolePolicy: aws.iam.assumeRolePolicyForPrincipal({ Service: "ecs-tasks.amazonaws.com" }) },
      parent,
    );
    const statements: pulumi.Input<object>[] = [
      { Sid: "EmbedWithOneModel", Effect: "Allow", Action: "bedrock:InvokeModel", Resource: args.bedrockModelArn },
      { Sid: "ReadTheDatabaseSecret", Effect: "Allow", Action: "secretsmanager:GetSecretValue", Resource: args.mysqlSecretArn },
    ];
    if (args.mysqlSecretKmsKeyArn) {
      statements.push({
        Sid: "DecryptTheSecret",
        Effect: "Allow",
        Action: "kms:Decrypt",
        Resource: args.mysqlSecretKmsKeyArn,
        Condition: { StringEquals: { "kms:ViaService": pulumi.interpolate`secretsmanager.${region}.amazonaws.com` } },
      });
    }
    new aws.iam.RolePolicy(
      `${name}TaskPolicy`,
      { role: taskRole.id, policy: pulumi.jsonStringify({ Version: "2012-10-17", Statement: statements }) },
      parent,
    );

    const container = (command: string[], streamPrefix: string) =>
      pulumi.jsonStringify([
        {
          name: "drugsync",
          image: args.image,
          essential: true,
          command: ["--config", CONFIG_PATH, ...command],
          environment: [
            { name: "DRUGSYNC_LOG_FORMAT", value: "json" },
            // Per task, on the task's own storage: see the top of this file.
            { name: "DRUGSYNC_CHECKPOINT_PATH", value: "/var/lib/drugsync/drugsync.redb" },
            { name: "DRUGSYNC_MYSQL_SECRET_ARN", value: args.mysqlSecretArn },
          ],
          secrets: [{ name: "DRUGSYNC_REDIS_URL", valueFrom: args.redisUrlSecretArn }],
          mountPoints: [{ sourceVolume: "checkpoint", containerPath: "/var/lib/drugsync" }],
          portMappings: [{ containerPort: METRICS_PORT, protocol: "tcp" }],
          // SIGTERM finishes the batch in flight and releases the lease.
          stopTimeout: 60,
          healthCheck: {
            command: ["CMD", "bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/${METRICS_PORT} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3 | grep -q ' 200 '`],
            interval: 30,
            timeout: 5,
            retries: 3,
            startPeriod: 120,
          },
          logConfiguration: {
            logDriver: "awslogs",
            options: { "awslogs-group": this.logGroup.name, "awslogs-region": region, "awslogs-stream-prefix": streamPrefix },
          },
        },
      ]);
    const taskDefinition = (suffix: string, command: string[], streamPrefix: string) =>
      new aws.ecs.TaskDefinition(
        `${name}${suffix}`,
        {
          family: `${name}-${suffix.toLowerCase()}`,
          requiresCompatibilities: ["FARGATE"],
          networkMode: "awsvpc",
          cpu: "1024",
          memory: "2048",
          executionRoleArn: executionRole.arn,
          taskRoleArn: taskRole.arn,
          containerDefinitions: container(command, streamPrefix),
          // No EFS: each task's checkpoint is its own.
          volumes: [{ name: "checkpoint" }],
        },
        parent,
      );

    const streamer = taskDefinition("Streamer", ["run"], "streamer");
    this.service = new aws.ecs.Service(
      `${name}Service`,
      {
        cluster: clusterArn,
        taskDefinition: streamer.arn,
        launchType: "FARGATE",
        desiredCount: args.standby ? 2 : 1,
        // The new task starts (and stands by) before the old one stops: the
        // lease hands over on the old task's SIGTERM, so a deploy pauses
        // replication for a second, not for the TTL.
        deploymentMinimumHealthyPercent: 100,
        deploymentMaximumPercent: 200,
        networkConfiguration: { subnets: args.subnetIds, securityGroups: args.securityGroupIds, assignPublicIp: false },
      },
      parent,
    );

    // The nightly reconcile: one task at 02:00 UTC that checks every document by hash.
    const reconcile = taskDefinition("Reconcile", ["--reconcile", "--output", "json"], "reconcile");
    const eventsRole = new aws.iam.Role(
      `${name}Schedule`,
      { assumeRolePolicy: aws.iam.assumeRolePolicyForPrincipal({ Service: "events.amazonaws.com" }) },
      parent,
    );
    new aws.iam.RolePolicy(
      `${name}SchedulePolicy`,
      {
        role: eventsRole.id,
        policy: pulumi.jsonStringify({
          Version: "2012-10-17",
          Statement: [
            { Effect: "Allow", Action: "ecs:RunTask", Resource: reconcile.arn },
            { Effect: "Allow", Action: "iam:PassRole", Resource: [executionRole.arn, taskRole.arn] },
          ],
        }),
      },
      parent,
    );
    const nightly = new aws.cloudwatch.EventRule(
      `${name}Nightly`,
      { scheduleExpression: args.reconcileSchedule ?? "cron(0 2 * * ? *)", description: "drugsync --reconcile" },
      parent,
    );
    new aws.cloudwatch.EventTarget(
      `${name}NightlyTarget`,
      {
        rule: nightly.name,
        arn: clusterArn,
        roleArn: eventsRole.arn,
        ecsTarget: {
          taskDefinitionArn: reconcile.arn,
          launchType: "FARGATE",
          taskCount: 1,
          networkConfiguration: { subnets: args.subnetIds, securityGroups: args.securityGroupIds, assignPublicIp: false },
        },
      },
      parent,
    );

    // Alarms read drugsync's JSON log lines (no CloudWatch agent needed).
    const namespace = `drugsync/${name}`;
    const metric = (id: string, metricName: string, pattern: string, value: string) =>
      new aws.cloudwatch.LogMetricFilter(
        `${name}${id}`,
        { logGroupName: this.logGroup.name, pattern, metricTransformation: { name: metricName, namespace, value, defaultValue: undefined } },
        parent,
      );
    metric("LagFilter", "LagMs", '{ $.message = "applied" }', "$.lag_ms");
    metric("WriterFilter", "WriterHeartbeats", '{ $.message = "writer heartbeat" }', "1");
    metric("ReconcileCallsFilter", "ReconcileEmbedCalls", '{ $.message = "reconcile finished" }', "$.embed_calls");
    const actions = args.alarmTopicArn ? [args.alarmTopicArn] : [];
    const alarm = (id: string, props: Omit<aws.cloudwatch.MetricAlarmArgs, "namespace" | "alarmActions" | "okActions">) =>
      new aws.cloudwatch.MetricAlarm(`${name}${id}`, { ...props, namespace, alarmActions: actions, okActions: actions }, parent);
    alarm("LagAlarm", {
      alarmDescription: "drugsync: a batch reached Redis more than the lag bound after its source commit. README, Runbook: lag.",
      metricName: "LagMs",
      statistic: "Maximum",
      period: 300,
      evaluationPeriods: 1,
      comparisonOperator: "GreaterThanThreshold",
      threshold: (args.maxLagSeconds ?? 300) * 1000,
      treatMissingData: "notBreaching",
    });
    alarm("NoWriterAlarm", {
      alarmDescription: "drugsync: no writer heartbeat for 5 minutes (no task holds the lease, or it is stuck). README, Runbook: no writer.",
      metricName: "WriterHeartbeats",
      statistic: "Sum",
      period: 300,
      evaluationPeriods: 1,
      comparisonOperator: "LessThanThreshold",
      threshold: 1,
      treatMissingData: "breaching",
    });
    alarm("NightlyEmbedAlarm", {
      alarmDescription: "drugsync: the nightly reconcile made embedding calls, so documents had drifted. README, Runbook: embedding calls at night.",
      metricName: "ReconcileEmbedCalls",
      statistic: "Sum",
      period: 86400,
      evaluationPeriods: 1,
      comparisonOperator: "GreaterThanThreshold",
      threshold: args.nightlyEmbedCallsAlarm ?? 100,
      treatMissingData: "notBreaching",
    });

    this.registerOutputs({ service: this.service.name, logGroup: this.logGroup.name });
  }
}
