// The team's SST v3 app with drugsync in it. Values come from SST secrets
// (`sst secret set DrugsyncImage ...`) or the stage; see docs/operations.md, Deploy.
// `sst install` generates .sst/platform/config.d.ts, which declares $config
// and $app; CI type-checks against sst-globals.ci.d.ts, a stand-in with the
// same shapes, because the SST CLI cannot be fetched there.

export default $config({
  app(input) {
    return {
      name: "drugsync",
      home: "aws",
      removal: input?.stage === "production" ? "retain" : "remove",
    };
  },
  async run() {
    const { Drugsync } = await import("./drugsync");
    const env = (name: string): string => {
      const value = process.env[name];
      if (!value) throw new Error(`set ${name} (see docs/operations.md, Deploy)`);
      return value;
    };
    const drugsync = new Drugsync("Drugsync", {
      image: env("DRUGSYNC_IMAGE"),
      subnetIds: env("DRUGSYNC_SUBNET_IDS").split(","),
      securityGroupIds: env("DRUGSYNC_SECURITY_GROUP_IDS").split(","),
      mysqlSecretArn: env("DRUGSYNC_MYSQL_SECRET_ARN"),
      redisUrlSecretArn: env("DRUGSYNC_REDIS_URL_SECRET_ARN"),
      bedrockModelArn: env("DRUGSYNC_BEDROCK_MODEL_ARN"),
      standby: $app.stage === "production",
      alarmTopicArn: process.env.DRUGSYNC_ALARM_TOPIC_ARN,
    });
    return { service: drugsync.service.name, logGroup: drugsync.logGroup.name };
  },
});
