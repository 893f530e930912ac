// Runs once, on the first start of an empty mongo-data volume (the image's /docker-entrypoint-initdb.d),
// as the root user. Creates one least-privilege user per client (docs/security.md "## MongoDB");
// passwords come from the compose secrets, never from this file.
const fs = require("fs");
const database = process.env.PF_MONGO_DATABASE;  // pipeline.yaml mongodb.database (a test checks it)
if (!database) { throw new Error("PF_MONGO_DATABASE is not set"); }
const secret = (name) => fs.readFileSync(`/run/secrets/${name}`, "utf8").trim();
const admin = db.getSiblingDB("admin");

// Debezium (change streams, capture.scope=database): find + changeStream on the pipeline's database
// only, listDatabases to discover it, and read on admin as the Debezium MongoDB docs require.
admin.createRole({
  role: "probablyfreshDebezium",
  privileges: [
    { resource: { db: database, collection: "" }, actions: ["find", "changeStream", "listCollections"] },
    { resource: { cluster: true }, actions: ["listDatabases"] },
  ],
  roles: [{ role: "read", db: "admin" }],
});
admin.createUser({ user: "debezium", pwd: secret("mongo-debezium.password"), roles: ["probablyfreshDebezium"] });

// The seeding job (freshctl seed, init service): readWrite on the pipeline's database, nothing else.
admin.createUser({ user: "seed", pwd: secret("mongo-seed.password"), roles: [{ role: "readWrite", db: database }] });
