using System;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace Integration.Host.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class MessageStore : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "message_store",
                columns: table => new
                {
                    Id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityAlwaysColumn),
                    StoredAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    Exchange = table.Column<string>(type: "character varying(255)", maxLength: 255, nullable: false),
                    MessageId = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: true),
                    CorrelationId = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: true),
                    ConversationId = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: true),
                    InitiatorId = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: true),
                    MessageType = table.Column<string>(type: "character varying(500)", maxLength: 500, nullable: true),
                    ContentType = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: true),
                    Headers = table.Column<string>(type: "jsonb", nullable: false),
                    History = table.Column<string>(type: "jsonb", nullable: true),
                    Body = table.Column<byte[]>(type: "bytea", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_message_store", x => x.Id);
                });

            migrationBuilder.CreateIndex(
                name: "IX_message_store_CorrelationId",
                table: "message_store",
                column: "CorrelationId");

            migrationBuilder.CreateIndex(
                name: "IX_message_store_MessageId_Exchange",
                table: "message_store",
                columns: new[] { "MessageId", "Exchange" },
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_message_store_MessageType",
                table: "message_store",
                column: "MessageType");

            migrationBuilder.CreateIndex(
                name: "IX_message_store_StoredAt",
                table: "message_store",
                column: "StoredAt");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "message_store");
        }
    }
}
